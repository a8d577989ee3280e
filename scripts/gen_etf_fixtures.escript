#!/usr/bin/env escript
%% -*- erlang -*-
-module(gen_etf_fixtures).
-mode(compile).
%% Writes OTP's external term format for a broad set of terms, so the Rust codec
%% tests need no Erlang installation:
%%
%%   escript scripts/gen_etf_fixtures.escript [OUT_DIR]
%%
%% OUT_DIR defaults to crates/beamish/tests/fixtures/etf (relative to the
%% repository root, found from this script's path). For every term it writes
%%   NAME.bin  the full term_to_binary output, starting with 131
%%   NAME.txt  the term printed with ~w (UTF-8); lines after the first that start
%%             with "%" are notes (why the fixture is special, or that the ~w
%%             text was cut because the term is big).
%% plus OTP_RELEASE (the release that wrote the files).
%%
%% Encoding: `term_to_binary(T, [{minor_version, 2}])`, which is OTP 26's default
%% and what the distribution sends (UTF-8 atoms: SMALL_ATOM_UTF8_EXT/ATOM_UTF8_EXT).
%% OTP 25's default (minor version 1) writes Latin-1 atoms as ATOM_EXT; a few of
%% those are kept as decode-only fixtures named legacy_*. Fixtures named
%% compressed_* are term_to_binary(T, [compressed]) (tag 80).
%%
%% Pids, references and ports come in three flavours:
%%   *_nonode   made on this (not distributed) node: nonode@nohost, creation 0;
%%   *_dist     made on a distributed node fixtures@127.0.0.1 with the creation
%%              that a private epmd gave it (this script starts that epmd on a
%%              free port and runs itself again as a distributed node);
%%   *_third    hand-built for node 'other@127.0.0.1' with creation 16#ABCDEF01
%%              and read back with binary_to_term.
%% The _nonode and _dist files change on every run (ids, serials, creations, the
%% random parts of references); everything else is stable for one OTP release.

-define(THIRD_NODE, 'other@127.0.0.1').
-define(THIRD_CREATION, 16#ABCDEF01).
-define(FIX_NODE, "fixtures@127.0.0.1").
%% Keep the ~w text of big terms short; the .bin files are the fixtures.
-define(MAX_TXT, 4096).

main(["--dist", OutDir]) ->
    %% The second run, as a distributed node (see dist_part/1).
    dist_part(OutDir);
main([OutDir]) ->
    run(OutDir);
main([]) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    run(filename:join([Root, "crates", "beamish", "tests", "fixtures", "etf"]));
main(_) ->
    io:format(standard_error, "usage: escript gen_etf_fixtures.escript [OUT_DIR]~n", []),
    halt(2).

run(OutDir) ->
    ok = filelib:ensure_dir(filename:join(OutDir, "x")),
    %% Start from an empty set, so a renamed fixture leaves no stale file behind.
    [ok = file:delete(F) || F <- filelib:wildcard(filename:join(OutDir, "*.{bin,txt}"))],
    ok = file:write_file(filename:join(OutDir, "OTP_RELEASE"),
                         [erlang:system_info(otp_release), "\n"]),
    Plain = terms() ++ nonode_terms(),
    [write(OutDir, Name, T, Opts, Notes) || {Name, T, Opts, Notes} <- Plain],
    Dist = run_dist(OutDir),
    Count = length(Plain) + Dist,
    {Files, Bytes} = dir_size(OutDir),
    io:format("wrote ~b fixtures (~b files, ~b bytes) to ~ts~n", [Count, Files, Bytes, OutDir]),
    halt(0).

%% ---------------------------------------------------------------------------
%% The terms. Each is {Name, Term, term_to_binary options, notes}.

terms() ->
    V2 = [{minor_version, 2}],
    T = fun(Name, Term) -> {Name, Term, V2, []} end,
    N = fun(Name, Term, Note) -> {Name, Term, V2, [Note]} end,
    Lambda = list_to_atom([955]),
    Hello = list_to_atom([$h, 16#E9, $l, $l, $o]),
    [
     %% integers: SMALL_INTEGER_EXT (97), INTEGER_EXT (98), SMALL_BIG_EXT (110), LARGE_BIG_EXT (111)
     T("int_0", 0),
     T("int_255", 255),
     T("int_256", 256),
     T("int_neg_1", -1),
     T("int_i32_max", 2147483647),
     T("int_i32_min", -2147483648),
     T("int_i32_max_plus_1", 2147483648),
     T("int_i32_min_minus_1", -2147483649),
     T("int_i64_max", 9223372036854775807),
     T("int_i64_min", -9223372036854775808),
     T("int_i64_max_plus_1", 9223372036854775808),
     T("int_i64_min_minus_1", -9223372036854775809),
     T("int_u64_max", 18446744073709551615),
     T("int_u64_max_plus_1", 18446744073709551616),
     N("big_100_bits", (1 bsl 99) + 12345678901234567890, "% 100 bits, SMALL_BIG_EXT"),
     N("big_neg_100_bits", -((1 bsl 99) + 12345678901234567890), "% -(100 bits), SMALL_BIG_EXT"),
     N("big_255_bytes", (1 bsl 2040) - 1, "% the largest SMALL_BIG_EXT (255 bytes)"),
     N("big_256_bytes", 1 bsl 2040, "% the smallest LARGE_BIG_EXT (256 bytes)"),
     N("big_5000_bits", (1 bsl 4999) + 987654321, "% 5000 bits, LARGE_BIG_EXT"),
     N("big_neg_5000_bits", -((1 bsl 4999) + 987654321), "% -(5000 bits), LARGE_BIG_EXT"),
     %% floats: NEW_FLOAT_EXT (70); built from their bits so no compiler folds -0.0
     T("float_0", float_bits(16#0000000000000000)),
     N("float_neg_0", float_bits(16#8000000000000000), "% -0.0 (sign bit set)"),
     T("float_1_5", 1.5),
     T("float_neg_0_1", -0.1),
     N("float_subnormal_min", float_bits(16#0000000000000001), "% 5.0e-324, the smallest subnormal"),
     N("float_normal_min", float_bits(16#0010000000000000), "% 2.2250738585072014e-308"),
     N("float_max", float_bits(16#7FEFFFFFFFFFFFFF), "% 1.7976931348623157e308"),
     T("float_neg_max", float_bits(16#FFEFFFFFFFFFFFFF)),
     %% atoms: SMALL_ATOM_UTF8_EXT (119), ATOM_UTF8_EXT (118)
     T("atom_empty", ''),
     T("atom_ok", ok),
     T("atom_true", true),
     N("atom_utf8_hello", Hello, "% 'h\\x{E9}llo': Latin-1 e-acute, two bytes in UTF-8"),
     N("atom_utf8_lambda", Lambda, "% '\\x{3BB}' (Greek lambda)"),
     N("atom_255_chars", list_to_atom(lists:duplicate(255, $a)), "% 255 x a: SMALL_ATOM_UTF8_EXT, length 255"),
     N("atom_255_lambdas", list_to_atom(lists:duplicate(255, 955)),
       "% 255 x lambda = 510 bytes: ATOM_UTF8_EXT"),
     %% binaries: BINARY_EXT (109), BIT_BINARY_EXT (77)
     T("binary_empty", <<>>),
     T("binary_hello", <<"hello">>),
     T("binary_bytes_0_255", list_to_binary(lists:seq(0, 255))),
     N("binary_64k", pattern(65536), "% 65536 bytes, byte I = I rem 251; the 1 MB one is made by the interop tests"),
     N("bitstring_1_3", <<1:3>>, "% 3 bits: 001"),
     N("bitstring_255_3_2", <<255, 3:2>>, "% 10 bits: 11111111 11"),
     N("bitstring_7_bits", <<16#7F:7>>, "% 7 bits, all ones"),
     %% lists: NIL_EXT (106), STRING_EXT (107), LIST_EXT (108)
     T("string_empty", ""),
     T("string_abc", "abc"),
     N("string_bytes_0_255", lists:seq(0, 255), "% every byte value: STRING_EXT"),
     N("list_bytes_70000", [I rem 256 || I <- lists:seq(0, 69999)],
       "% 70000 integers 0..255 (I rem 256): over 65535, so LIST_EXT, not STRING_EXT"),
     N("list_non_bytes", [256, -1, 955, a, 1.5, <<"b">>, [], {}], "% not all bytes: LIST_EXT"),
     N("list_unicode_codepoints", [955, 233, 8364], "% \"\\x{3BB}\\x{E9}\\x{20AC}\" as code points"),
     T("list_improper", [1 | 2]),
     T("list_improper_3", [a, b | c]),
     T("list_improper_tail_binary", [1, 2 | <<"t">>]),
     %% tuples: SMALL_TUPLE_EXT (104), LARGE_TUPLE_EXT (105)
     T("tuple_empty", {}),
     T("tuple_a_b", {a, b}),
     N("tuple_255", list_to_tuple(lists:seq(1, 255)), "% {1..255}: the largest SMALL_TUPLE_EXT"),
     N("tuple_256", list_to_tuple(lists:seq(1, 256)), "% {1..256}: the smallest LARGE_TUPLE_EXT"),
     N("tuple_300", list_to_tuple(lists:seq(1, 300)), "% {1..300}: LARGE_TUPLE_EXT"),
     %% maps: MAP_EXT (116); up to 32 keys OTP writes them sorted, above that in hash order
     T("map_empty", #{}),
     T("map_small", #{a => 1, b => <<"two">>, c => [3]}),
     N("map_32_keys", maps:from_list([{K, K * K} || K <- lists:seq(1, 32)]),
       "% 32 keys (flatmap, key order)"),
     N("map_33_keys", maps:from_list([{K, K * K} || K <- lists:seq(1, 33)]),
       "% 33 keys (hashmap): OTP writes the keys in hash order"),
     N("map_40_keys", maps:from_list([{list_to_atom("k" ++ integer_to_list(K)), K} || K <- lists:seq(1, 40)]),
       "% 40 atom keys k1..k40 (hashmap): OTP writes the keys in hash order"),
     N("map_compound_keys",
       #{{1, 2} => tuple, [x, y] => list, #{k => v} => map, <<"bin">> => binary,
         1.0 => float, 1 => integer, "str" => string, [] => nil, atom => atom},
       "% keys of every kind; 1 and 1.0 are different keys"),
     %% funs: EXPORT_EXT (113), NEW_FUN_EXT (112)
     T("fun_export_lists_map_2", fun lists:map/2),
     N("fun_local_identity", fun(X) -> X end,
       "% a local fun (closure) fun(X) -> X end of this escript's module; it holds the creator pid, so it changes on every run"),
     %% nesting
     N("nested_list_1000", nest(fun(X) -> [X] end, 1000, []), "% [[[...[]...]]] 1000 deep"),
     N("nested_tuple_1000", nest(fun(X) -> {X} end, 1000, {}), "% {{{...{}...}}} 1000 deep"),
     N("nested_map_100", nest(fun(X) -> #{k => X} end, 100, #{}), "% #{k => #{k => ...}} 100 deep"),
     %% mixed
     T("mixed", {ok, [1, 2, 3], #{name => <<"beamish">>, tags => [a, b]}, "str", 1.5, -7, {}}),
     %% third-node pids/refs/ports: hand-built, read back by binary_to_term
     N("pid_third", third_pid(), "% NEW_PID_EXT for 'other@127.0.0.1', creation 16#ABCDEF01"),
     N("pid_third_big_ids", third_pid(16#FFFFFFFF, 16#FFFFFFFF),
       "% NEW_PID_EXT with 32-bit id and serial (V4_NC)"),
     N("ref_third_3_words", third_ref([1, 2, 3]), "% NEWER_REFERENCE_EXT, 3 words, creation 16#ABCDEF01"),
     N("ref_third_5_words", third_ref([16#3FFFF, 16#FFFFFFFF, 16#FFFFFFFF, 7, 8]),
       "% NEWER_REFERENCE_EXT, 5 words (the most V4_NC allows)"),
     N("port_third", third_port(42), "% a port of 'other@127.0.0.1': NEW_PORT_EXT (id fits 32 bits)"),
     N("port_third_v4", third_port(16#123456789AB), "% a port with a 64-bit id: V4_PORT_EXT"),
     %% compressed (tag 80)
     {"compressed_binary_10k_zeros", <<0:80000>>, [compressed, {minor_version, 2}],
      ["% term_to_binary(T, [compressed]): 131, 80, UncompressedSize:32, zlib data"]},
     %% OTP 25's default encoding (minor version 1): Latin-1 atoms as ATOM_EXT (100)
     {"legacy_atom_ext_ok", ok, [{minor_version, 1}],
      ["% decode only: minor_version 1 writes ATOM_EXT (100); we write SMALL_ATOM_UTF8_EXT"]},
     {"legacy_atom_ext_hello", Hello, [{minor_version, 1}],
      ["% decode only: ATOM_EXT with the Latin-1 byte 16#E9"]},
     {"legacy_tuple_atoms", {ok, error, Lambda}, [{minor_version, 1}],
      ["% decode only: ATOM_EXT for the Latin-1 atoms, SMALL_ATOM_UTF8_EXT for lambda"]},
     {"legacy_float_v0", 1.5, [{minor_version, 0}],
      ["% decode only: minor_version 0 writes FLOAT_EXT (99), 31 bytes of text"]}
    ].

%% Made on this non-distributed node: nonode@nohost, creation 0.
nonode_terms() ->
    nodeful_terms("nonode", "nonode@nohost, creation 0").

nodeful_terms(Suffix, What) ->
    V2 = [{minor_version, 2}],
    Port = case erlang:ports() of [P | _] -> P; [] -> open_port({spawn, "true"}, []) end,
    [{"pid_" ++ Suffix, self(), V2, ["% self() of " ++ What]},
     {"ref_" ++ Suffix, make_ref(), V2, ["% make_ref() of " ++ What]},
     {"port_" ++ Suffix, Port, V2, ["% a port of " ++ What]},
     {"tuple_pid_ref_port_" ++ Suffix, {self(), make_ref(), Port}, V2, ["% " ++ What]}].

%% ---------------------------------------------------------------------------
%% The distributed part: a private epmd on a free port, and this script run
%% again with ERL_EPMD_PORT (erl reads it at start-up only).

run_dist(OutDir) ->
    Epmd = find("epmd"),
    Port = free_port(),
    PortS = integer_to_list(Port),
    EpmdPort = open_port({spawn_executable, Epmd},
                         [{args, ["-port", PortS]}, exit_status, stderr_to_stdout]),
    wait_epmd(Port, 50),
    Self = filename:absname(escript:script_name()),
    Child = open_port({spawn_executable, find("escript")},
                      [{args, [Self, "--dist", OutDir]}, {env, [{"ERL_EPMD_PORT", PortS}]},
                       exit_status, stderr_to_stdout, {line, 4096}]),
    Result = child_output(Child),
    os:cmd(Epmd ++ " -port " ++ PortS ++ " -kill"),
    catch port_close(EpmdPort),
    case Result of
        {ok, Count} -> Count;
        {error, Why} ->
            io:format(standard_error, "FAIL distributed fixtures: ~ts~n", [Why]),
            halt(1)
    end.

child_output(Port) ->
    receive
        {Port, {data, {eol, "dist_fixtures=" ++ N}}} ->
            child_output(Port, {ok, list_to_integer(N)});
        {Port, {data, {_, Line}}} ->
            io:format("  dist: ~ts~n", [Line]), child_output(Port);
        {Port, {exit_status, S}} -> {error, io_lib:format("the distributed run exited ~b", [S])}
    after 60000 -> {error, "the distributed run timed out"}
    end.

child_output(Port, Result) ->
    receive
        {Port, {data, {_, Line}}} -> io:format("  dist: ~ts~n", [Line]), child_output(Port, Result);
        {Port, {exit_status, 0}} -> Result;
        {Port, {exit_status, S}} -> {error, io_lib:format("the distributed run exited ~b", [S])}
    after 60000 -> {error, "the distributed run timed out"}
    end.

dist_part(OutDir) ->
    case net_kernel:start([list_to_atom(?FIX_NODE), longnames]) of
        {ok, _} -> ok;
        Err -> io:format("net_kernel:start failed: ~p~n", [Err]), halt(1)
    end,
    erlang:set_cookie(node(), fixtures),
    Creation = creation_of(self()),
    true = Creation =/= 0,
    What = io_lib:format("~s, creation ~b from epmd", [?FIX_NODE, Creation]),
    Terms = nodeful_terms("dist", lists:flatten(What)),
    [write(OutDir, Name, T, Opts, Notes) || {Name, T, Opts, Notes} <- Terms],
    io:format("dist_fixtures=~b~n", [length(Terms)]),
    halt(0).

%% The creation in a NEW_PID_EXT: its last four bytes.
creation_of(Pid) ->
    Bin = term_to_binary(Pid, [{minor_version, 2}]),
    binary:decode_unsigned(binary:part(Bin, byte_size(Bin) - 4, 4)).

wait_epmd(_Port, 0) ->
    io:format(standard_error, "FAIL the private epmd did not start~n", []), halt(1);
wait_epmd(Port, N) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 200) of
        {ok, S} -> gen_tcp:close(S);
        _ -> timer:sleep(100), wait_epmd(Port, N - 1)
    end.

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(L),
    gen_tcp:close(L),
    P.

find(Prog) ->
    case os:find_executable(Prog) of
        false ->
            io:format(standard_error, "FAIL ~s not found: run scripts/install_erlang.sh~n", [Prog]),
            halt(1);
        Path -> Path
    end.

%% ---------------------------------------------------------------------------
%% Helpers.

write(OutDir, Name, Term, Opts, Notes) ->
    Bin = term_to_binary(Term, Opts),
    %% Every fixture must read back as the same term.
    case binary_to_term(Bin) =:= Term andalso term_to_binary(binary_to_term(Bin), Opts) =:= Bin of
        true -> ok;
        false -> io:format(standard_error, "FAIL ~s does not round-trip~n", [Name]), halt(1)
    end,
    Text = unicode:characters_to_binary(io_lib:format("~w", [Term])),
    {Line1, Cut} = case byte_size(Text) > ?MAX_TXT of
                       true ->
                           Short = unicode:characters_to_binary(io_lib:format("~W", [Term, 12])),
                           {Short, [io_lib:format("% ~~w text cut (~b bytes); printed with ~~W depth 12",
                                                  [byte_size(Text)])]};
                       false -> {Text, []}
                   end,
    Txt = [Line1, "\n", [[unicode:characters_to_binary(N), "\n"] || N <- Notes ++ Cut]],
    ok = file:write_file(filename:join(OutDir, Name ++ ".bin"), Bin),
    ok = file:write_file(filename:join(OutDir, Name ++ ".txt"), Txt).

float_bits(Bits) ->
    <<F/float>> = <<Bits:64>>,
    F.

pattern(N) ->
    list_to_binary([I rem 251 || I <- lists:seq(0, N - 1)]).

%% Depth levels of F around Base.
nest(_F, 0, Acc) -> Acc;
nest(F, N, Acc) -> nest(F, N - 1, F(Acc)).

atom_ext(Atom) ->
    B = atom_to_binary(Atom, utf8),
    <<119, (byte_size(B)):8, B/binary>>.

third_pid() -> third_pid(123, 4).

third_pid(Id, Serial) ->
    binary_to_term(<<131, 88, (atom_ext(?THIRD_NODE))/binary, Id:32, Serial:32, ?THIRD_CREATION:32>>).

third_ref(Words) ->
    binary_to_term(<<131, 90, (length(Words)):16, (atom_ext(?THIRD_NODE))/binary, ?THIRD_CREATION:32,
                     << <<W:32>> || W <- Words >>/binary>>).

third_port(Id) ->
    binary_to_term(<<131, 120, (atom_ext(?THIRD_NODE))/binary, Id:64, ?THIRD_CREATION:32>>).

dir_size(Dir) ->
    Files = filelib:wildcard(filename:join(Dir, "*")),
    {length(Files), lists:sum([filelib:file_size(F) || F <- Files])}.
