%% The erl side of `tests/global_erl.rs`: an `erl` node (with global's
%% default `connect_all true`) that a beamish node drives.
%%
%% Started with `-eval`, which compiles and loads this file and calls
%% `start(Peer, Mode, Names)`: it registers each of Names globally (a
%% `{Name, Method}` pair: a new process registered with that resolve
%% method, before any connection), registers `ctl`, and prints `ready`;
%% with Mode `ping` it pings Peer first.
%%
%% `ctl` answers `{From, Ref, Cmd}` with `From ! {Ref, Reply}`:
%%
%%   started                the names registered at start: `[{Name, Result, Pid}]`
%%   {apply, M, F, A}       `catch apply(M, F, A)`
%%   {spawn_register, Name, Method}
%%                          a new process registers itself as Name with
%%                          Method (random_exit_name | notify_all_name);
%%                          reply `{Result, Pid}`
%%   {hold_lock, Id}        a new process takes `global:set_lock(Id, [node() |
%%                          nodes()])` and keeps it; reply `{Result, Pid}`
%%   {garbage, Node, Msg}   `{global_name_server, Node} ! Msg`; reply ok
%%   {unknown_call, Node}   a `gen_server:call` of an unknown request to
%%                          Node's name server, with a 1 s timeout; reply
%%                          what it gave (`timeout` expected)
%%   {kill, Pid}            `exit(Pid, kill)`
%%
%% A registered process forwards every message M to the ctl's caller that
%% made it, as `{erl_got, self(), M}` (those made at start, to the start
%% process, which has ended: their messages are dropped).

-module(global_helper).
-export([start/3]).

start(Peer, Mode, Names) ->
    Registered = [begin
                      {Res, Pid} = spawn_register(Name, Method, self()),
                      {Name, Res, Pid}
                  end || {Name, Method} <- Names],
    io:format("registered ~p~n", [Registered]),
    Ctl = spawn(fun() -> ctl(Registered) end),
    true = register(ctl, Ctl),
    case Mode of
        ping -> io:format("ping ~p~n", [net_adm:ping(Peer)]);
        wait -> ok
    end,
    io:format("ready~n").

ctl(Registered) ->
    receive
        {From, Ref, started} ->
            From ! {Ref, Registered};
        {From, Ref, Cmd} ->
            From ! {Ref, handle(Cmd, From)};
        _ ->
            ok
    end,
    ctl(Registered).

handle({apply, M, F, A}, _From) ->
    catch apply(M, F, A);
handle({spawn_register, Name, Method}, From) ->
    spawn_register(Name, Method, From);
handle({hold_lock, Id}, _From) ->
    Me = self(),
    Pid = spawn(fun() ->
                        Res = global:set_lock(Id, [node() | nodes()]),
                        Me ! {locked, self(), Res},
                        receive stop -> ok end
                end),
    receive {locked, Pid, Res} -> {Res, Pid} end;
handle({garbage, Node, Msg}, _From) ->
    {global_name_server, Node} ! Msg,
    ok;
handle({unknown_call, Node}, _From) ->
    try gen_server:call({global_name_server, Node}, {no_such_request, 42}, 1000)
    catch exit:{timeout, _} -> timeout
    end;
handle({kill, Pid}, _From) ->
    exit(Pid, kill);
handle(Other, _From) ->
    {unknown, Other}.

spawn_register(Name, Method, Owner) ->
    Me = self(),
    Fun = case Method of
              random_exit_name -> fun global:random_exit_name/3;
              notify_all_name -> fun global:notify_all_name/3
          end,
    Pid = spawn(fun() ->
                        Res = global:register_name(Name, self(), Fun),
                        Me ! {registered, self(), Res},
                        forward(Owner)
                end),
    receive {registered, Pid, Res} -> {Res, Pid} end.

forward(Owner) ->
    receive M -> Owner ! {erl_got, self(), M} end,
    forward(Owner).
