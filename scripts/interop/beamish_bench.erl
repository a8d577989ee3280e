%% The erl side of the `gen_call` and `erpc` workloads of `beamish bench`:
%% what `beamish node --bench-services` serves, written in Erlang, so that
%% erl->erl runs beside erl->beamish with the same requests.
%%   bench_kv (a gen_server): {echo, I} -> {ok, I}
%%   beamish_bench:echo(X) -> X (for erpc:call)
%%   the global name {bench_node, node()} and a running pg (for `cluster`)
-module(beamish_bench).
-behaviour(gen_server).
-export([start/0, echo/1]).
-export([init/1, handle_call/3, handle_cast/2]).

start() ->
    {ok, Pid} = gen_server:start({local, bench_kv}, ?MODULE, [], []),
    {ok, _} = pg:start(pg),
    yes = global:register_name({bench_node, node()}, Pid),
    ok.

echo(X) -> X.

init([]) -> {ok, #{}}.

handle_call({echo, I}, _From, S) -> {reply, {ok, I}, S};
handle_call(Req, _From, S) -> {reply, {error, {unknown_request, Req}}, S}.

handle_cast(_Req, S) -> {noreply, S}.
