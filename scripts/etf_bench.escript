#!/usr/bin/env escript
%% OTP's term_to_binary/1 and binary_to_term/1 on the terms that
%% crates/beamish/benches/etf.rs times, for a side-by-side comparison.
%%
%%   escript scripts/etf_bench.escript            # every term
%%   escript scripts/etf_bench.escript list_1000  # the terms whose name contains this
%%
%% Prints one line per term:
%%   term=NAME bytes=N encode_ns=E decode_ns=D
%% where E and D are nanoseconds per call, the best of 5 rounds of a loop
%% that runs at least 0.3 s (garbage collection of the results included,
%% as it is part of what a process pays).
-mode(compile).

main(Args) ->
    Filter = case Args of [F | _] -> F; [] -> "" end,
    io:format("% OTP ~s, erts ~s~n",
              [erlang:system_info(otp_release), erlang:system_info(version)]),
    [bench(Name, T) || {Name, T} <- terms(), string:find(Name, Filter) =/= nomatch],
    ok.

terms() ->
    Ints = fun(N) -> lists:seq(1, N) end,
    [{"small_tuple", {self(), make_ref(), {hello, 42}}},
     {"binary_1k", binary:copy(<<7>>, 1024)},
     {"list_1000_ints", Ints(1000)},
     {"map_100_keys",
      maps:from_list([{list_to_atom("k" ++ integer_to_list(I)), I} || I <- lists:seq(1, 100)])},
     {"binary_1m", binary:copy(<<7>>, 1 bsl 20)},
     {"list_100k_ints", Ints(100000)}].

bench(Name, T) ->
    B = term_to_binary(T),
    T = binary_to_term(B),
    Enc = best(fun(N) -> enc_loop(N, T, <<>>) end),
    Dec = best(fun(N) -> dec_loop(N, B, []) end),
    io:format("term=~s bytes=~p encode_ns=~.1f decode_ns=~.1f~n",
              [Name, byte_size(B), Enc, Dec]).

%% The best time per call over 5 rounds, each long enough to time well.
best(Loop) ->
    N = calibrate(Loop, 1),
    lists:min([time_per_call(Loop, N) || _ <- lists:seq(1, 5)]).

calibrate(Loop, N) ->
    case elapsed_ns(Loop, N) of
        Ns when Ns >= 300000000 -> N;
        Ns when Ns < 1000 -> calibrate(Loop, N * 10);
        Ns -> max(N, (N * 300000000) div Ns)
    end.

time_per_call(Loop, N) ->
    elapsed_ns(Loop, N) / N.

elapsed_ns(Loop, N) ->
    garbage_collect(),
    T0 = erlang:monotonic_time(nanosecond),
    _ = Loop(N),
    erlang:monotonic_time(nanosecond) - T0.

%% The last result is carried along so that no call can be optimised away.
enc_loop(0, _T, Last) -> Last;
enc_loop(N, T, _) -> enc_loop(N - 1, T, term_to_binary(T)).

dec_loop(0, _B, Last) -> Last;
dec_loop(N, B, _) -> dec_loop(N - 1, B, binary_to_term(B)).
