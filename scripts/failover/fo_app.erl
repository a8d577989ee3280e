%% fo_app: the distributed OTP application that
%% scripts/failover/otp_failover.escript moves around a three-node cluster.
%%
%% One module plays three parts:
%%   * the application callback (start/2, stop/1);
%%   * its top supervisor (init(sup), one_for_one, a single permanent child);
%%   * the gen_server fo_counter (init(counter), handle_call/3, ...),
%%     registered as {global, fo_counter}, so the driver reaches it by name
%%     wherever OTP runs it.
%%
%% Calls: incr  -> the next integer, starting at 1 with each instance;
%%        where -> the node() the instance runs on.
%%
%% Only -behaviour(application) and -behaviour(supervisor) are declared: the
%% gen_server callbacks are here too, but gen_server's init/1 would clash with
%% supervisor's init/1 in the compiler's behaviour check, so init/1 dispatches
%% on its argument instead.
-module(fo_app).
-behaviour(application).
-behaviour(supervisor).

%% application
-export([start/2, stop/1]).
%% supervisor and gen_server
-export([init/1]).
%% gen_server
-export([start_counter/0, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2, code_change/3]).

-define(NAME, fo_counter).

%%% application --------------------------------------------------------------

%% StartType is normal, {failover, FromNode} or {takeover, FromNode}; it goes
%% to this node's stderr, which the driver relays prefixed with the node name.
%% How long releasing the name and starting the supervision tree (which
%% registers the global name) took is logged too.
start(StartType, _Args) ->
    io:format(standard_error, "fo_app: start(~p) on ~p~n", [StartType, node()]),
    T0 = erlang:monotonic_time(microsecond),
    case StartType of
        {takeover, _From} ->
            %% A takeover starts the new instance *before* OTP stops the old
            %% one (application:takeover/2), so the old counter still holds
            %% the global name and our start_link would fail with
            %% {already_started, Pid}. Release the name first; the old
            %% instance keeps running, unnamed, until OTP stops it.
            _ = global:unregister_name(?NAME),
            ok;
        _ ->
            ok
    end,
    T1 = erlang:monotonic_time(microsecond),
    Res = supervisor:start_link(?MODULE, sup),
    T2 = erlang:monotonic_time(microsecond),
    io:format(standard_error, "fo_app: ~p after ~.1f ms (name released in ~.1f ms)~n",
              [element(1, Res), (T2 - T0) / 1000, (T1 - T0) / 1000]),
    Res.

stop(_State) ->
    io:format(standard_error, "fo_app: stopped on ~p~n", [node()]),
    ok.

%%% supervisor and gen_server init --------------------------------------------

init(sup) ->
    Flags = #{strategy => one_for_one, intensity => 5, period => 10},
    Child = #{id => ?NAME,
              start => {?MODULE, start_counter, []},
              restart => permanent,
              shutdown => 1000,
              type => worker,
              modules => [?MODULE]},
    {ok, {Flags, [Child]}};
init(counter) ->
    {ok, 0}.

%%% gen_server fo_counter -----------------------------------------------------

start_counter() ->
    gen_server:start_link({global, ?NAME}, ?MODULE, counter, []).

handle_call(incr, _From, N) ->
    {reply, N + 1, N + 1};
handle_call(where, _From, N) ->
    {reply, node(), N}.

handle_cast(_Msg, N) ->
    {noreply, N}.

handle_info(_Msg, N) ->
    {noreply, N}.

terminate(_Reason, _N) ->
    ok.

code_change(_OldVsn, N, _Extra) ->
    {ok, N}.
