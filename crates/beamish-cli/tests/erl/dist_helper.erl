%% The erl side of `tests/dist_erl.rs`: an `erl` node that a beamish node
%% (the test binary) drives over distribution.
%%
%% Started with `-eval`, which compiles and loads this file and calls
%% `start(Peer, Mode)`: it registers `ctl` and prints `ready`; with Mode
%% `ping` it first pings Peer and prints `ping pong|pang` and `nodes [...]`.
%%
%% `ctl` answers `{From, Ref, Cmd}` with `From ! {Ref, Reply}`:
%%
%%   echo                   spawns an echo process: `{From, Ref, T}` gets
%%                          `{Ref, T, term_to_binary(T, [{minor_version, 2}])}`
%%   puppet                 spawns a puppet (below); when it dies, From gets
%%                          `{puppet_down, Pid, Reason}`
%%   dead_pid               a pid of a process that has ended
%%   make_ref | port | closure   a reference, a port, a closure of this node
%%   {register_forwarder, Name}  registers a process as Name: `{To, T}` gets
%%                          `To ! {forwarded, Name, T, term_to_binary(T, ...)}`
%%   {person, Map}          the serde check: the map with name ++ "!", age + 1
%%                          and <<"erl">> in front of its tags
%%   {links, Pid}           `process_info(Pid, links)`
%%   {whereis, Name}        `whereis(Name)`
%%   {disconnect_and_tell, Node, Dest, Msg}
%%                          no reply: disconnects Node, waits until nodes()
%%                          no longer lists it, then sends Msg to Dest
%%   {disconnect_and_watch, Node, Ms, Dest, To}
%%                          no reply: disconnects Node, waits until nodes()
%%                          no longer lists it, then Ms milliseconds more, and
%%                          sends `{To, {connected_again, Bool}}` to Dest
%%
%% A puppet answers `{From, Ref, Cmd}` with `From ! {Ref, Reply}`:
%%
%%   trap                   traps exits; each `{'EXIT', P, R}` is then sent
%%                          to From as `{puppet_exit, self(), P, R}`
%%   {link, Pid} | {unlink, Pid} | links
%%   {monitor, Pid}         monitors Pid; its DOWN goes to From as
%%                          `{puppet_saw_down, self(), Pid, Reason}`
%%   {exit, Reason}         replies, then exits with Reason
%%   {exit_other, Pid, Reason}   `exit(Pid, Reason)`

-module(dist_helper).
-export([start/2]).

-define(TBF, [{minor_version, 2}]).

start(Peer, Mode) ->
    Ctl = spawn(fun() -> ctl(#{}) end),
    true = register(ctl, Ctl),
    case Mode of
        ping ->
            Result = net_adm:ping(Peer),
            io:format("ping ~p~n", [Result]),
            io:format("nodes ~p~n", [nodes()]);
        wait ->
            ok
    end,
    io:format("ready~n").

ctl(Owners) ->
    receive
        {_From, _Ref, {disconnect_and_tell, Node, Dest, Msg}} ->
            %% No reply: it would connect to Node again.
            true = erlang:disconnect_node(Node),
            wait_disconnected(Node),
            Dest ! Msg,
            ctl(Owners);
        {_From, _Ref, {disconnect_and_watch, Node, Ms, Dest, To}} ->
            true = erlang:disconnect_node(Node),
            wait_disconnected(Node),
            timer:sleep(Ms),
            Dest ! {To, {connected_again, lists:member(Node, nodes())}},
            ctl(Owners);
        {From, Ref, Cmd} when is_pid(From) ->
            {Reply, Owners1} = command(Cmd, From, Owners),
            From ! {Ref, Reply},
            ctl(Owners1);
        {'DOWN', MRef, process, Pid, Reason} ->
            case maps:take(MRef, Owners) of
                {Owner, Owners1} ->
                    Owner ! {puppet_down, Pid, Reason},
                    ctl(Owners1);
                error ->
                    ctl(Owners)
            end;
        _ ->
            ctl(Owners)
    end.

wait_disconnected(Node) ->
    case lists:member(Node, nodes()) of
        true -> timer:sleep(10), wait_disconnected(Node);
        false -> ok
    end.

command(echo, _From, Owners) ->
    {spawn(fun echo/0), Owners};
command(puppet, From, Owners) ->
    {Pid, MRef} = spawn_monitor(fun() -> puppet(undefined) end),
    {Pid, Owners#{MRef => From}};
command(dead_pid, _From, Owners) ->
    {Pid, MRef} = spawn_monitor(fun() -> ok end),
    receive {'DOWN', MRef, process, Pid, _} -> ok end,
    {Pid, Owners};
command(make_ref, _From, Owners) ->
    {make_ref(), Owners};
command(port, _From, Owners) ->
    {hd(erlang:ports()), Owners};
command(closure, _From, Owners) ->
    N = erlang:unique_integer([positive]),
    {fun(X) -> {X, N, self()} end, Owners};
command({register_forwarder, Name}, _From, Owners) ->
    Pid = spawn(fun() -> forwarder(Name) end),
    {register(Name, Pid), Owners};
command({person, #{name := Name, age := Age, tags := Tags} = M}, _From, Owners) ->
    {M#{name := <<Name/binary, "!">>, age := Age + 1, tags := [<<"erl">> | Tags]}, Owners};
command({whereis, Name}, _From, Owners) ->
    {whereis(Name), Owners};
command({links, Pid}, _From, Owners) ->
    {process_info(Pid, links), Owners};
command(Other, _From, Owners) ->
    {{unknown_command, Other}, Owners}.

echo() ->
    receive
        {From, Ref, T} when is_pid(From) ->
            From ! {Ref, T, term_to_binary(T, ?TBF)};
        _ ->
            ok
    end,
    echo().

forwarder(Name) ->
    receive
        {To, T} when is_pid(To) ->
            To ! {forwarded, Name, T, term_to_binary(T, ?TBF)};
        _ ->
            ok
    end,
    forwarder(Name).

puppet(Reports) ->
    receive
        {From, Ref, Cmd} when is_pid(From) ->
            case Cmd of
                trap ->
                    process_flag(trap_exit, true),
                    From ! {Ref, ok},
                    puppet(From);
                {exit, Reason} ->
                    From ! {Ref, ok},
                    exit(Reason);
                _ ->
                    From ! {Ref, puppet_command(Cmd, From)},
                    puppet(Reports)
            end;
        {'EXIT', P, R} when Reports =/= undefined ->
            Reports ! {puppet_exit, self(), P, R},
            puppet(Reports);
        {'DOWN', _, process, Pid, Reason} ->
            case get({watcher, Pid}) of
                undefined -> ok;
                Watcher -> Watcher ! {puppet_saw_down, self(), Pid, Reason}
            end,
            puppet(Reports);
        _ ->
            puppet(Reports)
    end.

puppet_command({link, Pid}, _From) -> catch link(Pid);
puppet_command({unlink, Pid}, _From) -> unlink(Pid);
puppet_command(links, _From) -> element(2, process_info(self(), links));
puppet_command({monitor, Pid}, From) ->
    put({watcher, Pid}, From),
    erlang:monitor(process, Pid);
puppet_command({exit_other, Pid, Reason}, _From) -> exit(Pid, Reason);
puppet_command(Other, _From) -> {unknown_command, Other}.
