"""The one SQL lexer: where statements, quotes, dollar quotes and comments end, as psql and PostgreSQL read them.

The unit cases pin each rule; the last test runs every statement the lexer split out on the real
server, one at a time, so a boundary the lexer got wrong would be an error or a wrong value there.
"""

from __future__ import annotations

import pytest

from fix7_pipeline.core.postgres.sql_lexer import (BLOCK_COMMENT, LINE_COMMENT, PlainScanner, Tok, lex, quote_at,
                                                   quote_end, tokens)
from fix7_pipeline_tests.pg import superuser


def texts(sql: str) -> list[str]:
    return [st.text for st in lex(sql).statements]


def test_dollar_quotes_hide_semicolons_and_other_tags():
    sql = "create function f() returns int as $body$ select 1; $x$ ; $x$ $body$ language sql; select 2;"
    assert texts(sql) == ["create function f() returns int as $body$ select 1; $x$ ; $x$ $body$ language sql;",
                          "select 2;"]
    assert texts("select $$a;b$$, $q$it's$q$;") == ["select $$a;b$$, $q$it's$q$;"]
    assert texts("select $1; select $tag$\n;\n$tag$;") == ["select $1;", "select $tag$ ; $tag$;"]
    # a $ right after an identifier character opens nothing: a$b$ is one identifier
    assert texts("select a$b$; select 2;") == ["select a$b$;", "select 2;"]
    assert texts("select $é$;$é$;") == ["select $é$;$é$;"]  # non-ASCII tags, as the server's byte lexer reads them


def test_nested_block_comments_and_line_comments():
    assert texts("select /* a /* b; */ still; */ 1; -- c; d\nselect 2;") == ["select 1;", "select 2;"]
    assert texts("select 1 --; not a statement\n;") == ["select 1 ;"]
    assert texts("select '--not a comment', '/*'; select 2;") == ["select '--not a comment', '/*';", "select 2;"]
    sc = PlainScanner()
    sc.feed(1, "select /* open /* nested */\n")
    assert (sc.q, sc.depth) == (BLOCK_COMMENT, 1)
    _, sts, _ = sc.feed(2, "still */ 1;\n")
    assert [s.text for s in sts] == ["select 1;"] and sc.q is None


def test_escape_strings_and_standard_conforming_strings():
    assert texts(r"select E'it\'s; here', e'\\'; select 2;") == [r"select E'it\'s; here', e'\\';", "select 2;"]
    # with standard_conforming_strings on, a backslash in '' is a plain character ...
    assert texts("select 'a\\'; select 2;") == ["select 'a\\';", "select 2;"]
    # ... and off, it escapes the quote, as the server then reads it
    off = "set standard_conforming_strings = off; select 'a\\'; still'; select 2;"
    assert texts(off) == ["set standard_conforming_strings = off;", "select 'a\\'; still';", "select 2;"]
    # an E that ends an identifier does not make an escape string
    assert texts("select some'x\\'; select 2;") == ["select some'x\\';", "select 2;"]


def test_quoted_identifiers():
    assert texts('select 1 as "a;b", 2 as "say ""hi""";') == ['select 1 as "a;b", 2 as "say ""hi""";']
    toks = tokens('alter table "My ""T""".x add column "C" int')
    assert [t for t in toks if t.kind == "ident"] == [Tok("ident", 'My "T"', 0), Tok("ident", "C", 0)]


def test_meta_commands_and_copy_data():
    lexed = lex("select '\\x';\n\\! echo\ncopy t from stdin;\n")
    assert [m.word for m in lexed.metas] == ["!"] and lexed.statements[0].text == "select '\\x';"
    sc = PlainScanner()
    assert sc.feed(1, "COPY public.t (a) FROM stdin;\n")[0] == "sql"
    assert sc.feed(2, "x\\\\y;'\t\\N\n")[0] == "copy_data"
    assert sc.feed(3, "\\.\n")[0] == "copy_end"
    assert sc.feed(4, "select 1;\n")[1][0].text == "select 1;"


def test_the_last_statement_needs_no_semicolon_and_source_is_exact():
    sql = "select 1; /* keep */ select\n  'two'"
    lexed = lex(sql)
    assert [s.text for s in lexed.statements] == ["select 1;", "select 'two'"]
    assert lexed.source(lexed.statements[1]) == "select\n  'two'"


@pytest.mark.parametrize("text,i,expected", [
    ("-- x", 0, LINE_COMMENT), ("/* x", 0, BLOCK_COMMENT), ("'x'", 0, "'"), ("E'x'", 1, "E'"), ("xe'x'", 2, "'"),
    ('"x"', 0, '"'), ("$a$x$a$", 0, "$a$"), ("$1", 0, None), ("a$$", 1, None), ("-1", 0, None), ("/2", 0, None),
])
def test_quote_at(text, i, expected):
    assert quote_at(text, i) == expected


def test_quote_end():
    assert quote_end("it''s' rest", 0, "'") == (6, 0)
    assert quote_end("it''s", 0, "'") == (None, 0)
    assert quote_end(r"a\'b' rest", 0, "E'") == (5, 0)
    assert quote_end("x */ y */ z", 0, BLOCK_COMMENT, 2) == (9, 0)
    assert quote_end("x /* y */", 0, BLOCK_COMMENT, 1) == (None, 1)
    assert quote_end("body $t$ rest", 0, "$t$") == (8, 0)
    assert quote_end("comment\nnext", 0, LINE_COMMENT) == (7, 0)


def test_tokens_drop_comments_and_keep_strings_whole():
    toks = tokens("create /* index */ index -- on x\n on t (a, 'x)') where b = $$)$$ and c = E'\\')'")
    assert [(t.kind, t.value) for t in toks if t.kind in ("word", "str")] == [
        ("word", "create"), ("word", "index"), ("word", "on"), ("word", "t"), ("word", "a"), ("str", ""),
        ("word", "where"), ("word", "b"), ("str", ""), ("word", "and"), ("word", "c"), ("str", "")]
    assert max(t.depth for t in toks) == 1 and toks[-1].depth == 0
    # b'', x'', n'' and u&'' are one string token, the prefix included
    assert [t.kind for t in tokens("select b'01', x'ff', n'n', u&'u'")] == ["word"] + ["str", "punct"] * 3 + ["str"]
    assert [t.kind for t in tokens("a +/* c */ b")] == ["word", "op", "word"]  # an operator never holds a comment


TRICKY = r"""
select 1 as one; select ';' as semi;
select $$ ; $$ as dollar; select $t$ $$ ; $t$ as tagged;
select /* ; /* ; */ ; */ 'nested' as nested;
select 'it''s' as doubled; select E'\'' as escaped;
select "a;b" from (select 'q' as "a;b") s;
select 'x' -- ; comment
  as line_comment;
set standard_conforming_strings = off;
select 'a\'b' as off_escape;
set standard_conforming_strings = on;
select 'c\' as on_backslash
"""


def test_the_server_agrees_with_every_boundary(server):
    lexed = lex(TRICKY)
    pieces = [lexed.source(st) for st in lexed.statements]
    assert len(pieces) == 13
    got = []
    with superuser(server, server.admin_db) as conn:
        for piece in pieces:
            cur = conn.execute(piece)
            if cur.description:
                got.append(cur.fetchone()[0])
    assert got == [1, ";", " ; ", " $$ ; ", "nested", "it's", "'", "q", "x", "a'b", "c\\"]
