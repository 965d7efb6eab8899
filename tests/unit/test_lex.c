/* test_lex.c - the scanner (grammar/tfx.l) on its own: tokens, literal values, spans,
 * automatic semicolons and every lexical error. Each test scans a string in-process
 * with parse_dump_tokens() (one line per token: `line:col+length kind value`) and
 * compares the dump and the exact diagnostics. */
#include <criterion/criterion.h>
#include <string.h>

#include "front/parse.h"
#include "front/source.h"
#include "tfx.tab.h"

/* One scan: the session arena, diagnostics collected as text, and the token dump. */
typedef struct Lexed {
    Arena      arena;
    DiagEngine diag;
    Buf        tokens;
} Lexed;

static void lex_bytes(Lexed *r, const char *src, size_t len)
{
    arena_init(&r->arena);
    diag_init(&r->diag, NULL);
    buf_init(&r->tokens);
    uint32_t id = source_add_string(&r->arena, &r->diag, "t.tfx", src, (uint32_t)len);
    parse_dump_tokens(&r->arena, &r->diag, id, &r->tokens);
}

static void lex(Lexed *r, const char *src)
{
    lex_bytes(r, src, strlen(src));
}

static void lexed_dispose(Lexed *r)
{
    buf_dispose(&r->tokens);
    diag_dispose(&r->diag);
    arena_dispose(&r->arena);
}

/* Scans src and checks the token dump and the diagnostics text ("" for none). */
static void check_lex(const char *src, const char *tokens, const char *diags)
{
    Lexed r;
    lex(&r, src);
    cr_assert_str_eq(buf_str(&r.tokens), tokens);
    cr_assert_str_eq(buf_str(&r.diag.buf), diags);
    lexed_dispose(&r);
}

/* ---- tokens ---- */

Test(lex, keywords_are_tokens_and_longer_words_are_identifiers)
{
    check_lex("as block const else expert false for if in input model output param rename",
              "1:1+2 'as'\n"
              "1:4+5 'block'\n"
              "1:10+5 'const'\n"
              "1:16+4 'else'\n"
              "1:21+6 'expert'\n"
              "1:28+5 'false'\n"
              "1:34+3 'for'\n"
              "1:38+2 'if'\n"
              "1:41+2 'in'\n"
              "1:44+5 'input'\n"
              "1:50+5 'model'\n"
              "1:56+6 'output'\n"
              "1:63+5 'param'\n"
              "1:69+6 'rename'\n"
              "1:75+0 end of file\n",
              "");
    check_lex("repeat return scope true until use where f32 f16 bf16 i32",
              "1:1+6 'repeat'\n"
              "1:8+6 'return'\n"
              "1:15+5 'scope'\n"
              "1:21+4 'true'\n"
              "1:26+5 'until'\n"
              "1:32+3 'use'\n"
              "1:36+5 'where'\n"
              "1:42+3 'f32'\n"
              "1:46+3 'f16'\n"
              "1:50+4 'bf16'\n"
              "1:55+3 'i32'\n"
              "1:58+0 end of file\n",
              "");
    check_lex("models _x1 f64 Input",
              "1:1+6 identifier models\n"
              "1:8+3 identifier _x1\n"
              "1:12+3 identifier f64\n"
              "1:16+5 identifier Input\n"
              "1:21+0 ';' (auto)\n"
              "1:21+0 end of file\n",
              "");
}

Test(lex, operators_and_punctuation)
{
    check_lex("+ - * / % @ ** < <= > >= == != = , : ; . .. -> ( ) [ ] { } ^T",
              "1:1+1 '+'\n1:3+1 '-'\n1:5+1 '*'\n1:7+1 '/'\n1:9+1 '%'\n1:11+1 '@'\n"
              "1:13+2 '**'\n1:16+1 '<'\n1:18+2 '<='\n1:21+1 '>'\n1:23+2 '>='\n"
              "1:26+2 '=='\n1:29+2 '!='\n1:32+1 '='\n1:34+1 ','\n1:36+1 ':'\n1:38+1 ';'\n"
              "1:40+1 '.'\n1:42+2 '..'\n1:45+2 '->'\n1:48+1 '('\n1:50+1 ')'\n1:52+1 '['\n"
              "1:54+1 ']'\n1:56+1 '{'\n1:58+1 '}'\n1:60+2 '^T'\n"
              "1:62+0 ';' (auto)\n1:62+0 end of file\n",
              "");
}

Test(lex, transpose_needs_a_boundary_after_T)
{
    check_lex("x^T@y^T",
              "1:1+1 identifier x\n1:2+2 '^T'\n1:4+1 '@'\n1:5+1 identifier y\n1:6+2 '^T'\n"
              "1:8+0 ';' (auto)\n1:8+0 end of file\n",
              "");
    check_lex("x^Tx",
              "1:1+1 identifier x\n1:3+2 identifier Tx\n1:5+0 ';' (auto)\n1:5+0 end of file\n",
              "t.tfx:1:2: error: unexpected character '^'\n"
              "    1 | x^Tx\n"
              "      |  ^\n");
}

/* ---- literals ---- */

Test(lex, integer_and_float_literal_forms)
{
    check_lex("0 42 1.5 1e-5 .5 2. 1.e3 7E+2 9223372036854775807",
              "1:1+1 integer literal 0\n"
              "1:3+2 integer literal 42\n"
              "1:6+3 float literal 1.5\n"
              "1:10+4 float literal 1e-05\n"
              "1:15+2 float literal 0.5\n"
              "1:18+2 float literal 2.0\n"
              "1:21+4 float literal 1000.0\n"
              "1:26+4 float literal 700.0\n"
              "1:31+19 integer literal 9223372036854775807\n"
              "1:50+0 ';' (auto)\n"
              "1:50+0 end of file\n",
              "");
}

Test(lex, range_after_integer_is_not_a_float)
{
    check_lex("0..n 1.5..2",
              "1:1+1 integer literal 0\n1:2+2 '..'\n1:4+1 identifier n\n"
              "1:6+3 float literal 1.5\n1:9+2 '..'\n1:11+1 integer literal 2\n"
              "1:12+0 ';' (auto)\n1:12+0 end of file\n",
              "");
}

Test(lex, string_escapes_are_decoded)
{
    check_lex("\"a\\tb\\\"c\\\\d\\n\" \"\" \"h.{l}\"",
              "1:1+14 string literal \"a\\tb\\\"c\\\\d\\n\"\n"
              "1:16+2 string literal \"\"\n"
              "1:19+7 string literal \"h.{l}\"\n"
              "1:26+0 ';' (auto)\n1:26+0 end of file\n",
              "");
}

Test(lex, non_ascii_is_allowed_in_strings_and_comments)
{
    check_lex("s = \"caf\xc3\xa9\" # na\xc3\xafve \x01\n",
              "1:1+1 identifier s\n1:3+1 '='\n1:5+7 string literal \"caf\\xc3\\xa9\"\n"
              "1:12+0 ';' (auto)\n2:1+0 end of file\n",
              "");
}

/* ---- automatic semicolons ---- */

Test(lex, newline_after_operand_or_closer_inserts_semicolon)
{
    check_lex("a\n1\n2.5\n\"s\"\ntrue\nfalse\nreturn\n)\n]\n}\nx^T\n",
              "1:1+1 identifier a\n1:2+0 ';' (auto)\n"
              "2:1+1 integer literal 1\n2:2+0 ';' (auto)\n"
              "3:1+3 float literal 2.5\n3:4+0 ';' (auto)\n"
              "4:1+3 string literal \"s\"\n4:4+0 ';' (auto)\n"
              "5:1+4 'true'\n5:5+0 ';' (auto)\n"
              "6:1+5 'false'\n6:6+0 ';' (auto)\n"
              "7:1+6 'return'\n7:7+0 ';' (auto)\n"
              "8:1+1 ')'\n8:2+0 ';' (auto)\n"
              "9:1+1 ']'\n9:2+0 ';' (auto)\n"
              "10:1+1 '}'\n10:2+0 ';' (auto)\n"
              "11:1+1 identifier x\n11:2+2 '^T'\n11:4+0 ';' (auto)\n"
              "12:1+0 end of file\n",
              "");
}

Test(lex, scalar_type_names_are_identifiers_and_dtypes_are_keywords)
{
    check_lex("int\nfloat\nbool\nmask\nfn\nstr\nf32\n",
              "1:1+3 identifier int\n1:4+0 ';' (auto)\n"
              "2:1+5 identifier float\n2:6+0 ';' (auto)\n"
              "3:1+4 identifier bool\n3:5+0 ';' (auto)\n"
              "4:1+4 identifier mask\n4:5+0 ';' (auto)\n"
              "5:1+2 identifier fn\n5:3+0 ';' (auto)\n"
              "6:1+3 identifier str\n6:4+0 ';' (auto)\n"
              "7:1+3 'f32'\n"
              "8:1+0 end of file\n",
              "");
}

Test(lex, newline_after_operator_or_comma_continues_the_line)
{
    check_lex("a +\nb,\nc =\n(\n[\n{\n",
              "1:1+1 identifier a\n1:3+1 '+'\n"
              "2:1+1 identifier b\n2:2+1 ','\n"
              "3:1+1 identifier c\n3:3+1 '='\n"
              "4:1+1 '('\n5:1+1 '['\n6:1+1 '{'\n"
              "7:1+0 end of file\n",
              "");
}

Test(lex, blank_lines_comments_and_explicit_semicolons_insert_nothing_more)
{
    check_lex("x = 1 # one\n\n   \n# two\ny;\n",
              "1:1+1 identifier x\n1:3+1 '='\n1:5+1 integer literal 1\n1:6+0 ';' (auto)\n"
              "5:1+1 identifier y\n5:2+1 ';'\n"
              "6:1+0 end of file\n",
              "");
}

Test(lex, end_of_file_counts_as_a_newline)
{
    check_lex("x", "1:1+1 identifier x\n1:2+0 ';' (auto)\n1:2+0 end of file\n", "");
    check_lex("x # no newline at the end",
              "1:1+1 identifier x\n1:2+0 ';' (auto)\n1:26+0 end of file\n", "");
    check_lex("", "1:1+0 end of file\n", "");
}

Test(lex, crlf_line_endings_read_like_lf)
{
    check_lex("a = 1\r\nb\r\n",
              "1:1+1 identifier a\n1:3+1 '='\n1:5+1 integer literal 1\n1:6+0 ';' (auto)\n"
              "2:1+1 identifier b\n2:2+0 ';' (auto)\n"
              "3:1+0 end of file\n",
              "");
}

/* ---- lexical errors: one diagnostic each, scanning goes on ---- */

Test(lex, unexpected_printable_character)
{
    check_lex("a $ b",
              "1:1+1 identifier a\n1:5+1 identifier b\n1:6+0 ';' (auto)\n1:6+0 end of file\n",
              "t.tfx:1:3: error: unexpected character '$'\n"
              "    1 | a $ b\n"
              "      |   ^\n");
}

Test(lex, run_of_bad_bytes_is_one_error)
{
    check_lex("a $`?\x01\x7f b ! c",
              "1:1+1 identifier a\n1:9+1 identifier b\n1:13+1 identifier c\n"
              "1:14+0 ';' (auto)\n1:14+0 end of file\n",
              "t.tfx:1:3: error: unexpected character '$'\n"
              "    1 | a $`??? b ! c\n"
              "      |   ^~~~~\n"
              "t.tfx:1:11: error: unexpected character '!'\n"
              "    1 | a $`??? b ! c\n"
              "      |           ^\n");
}

Test(lex, nul_byte_is_an_error_and_scanning_goes_on)
{
    Lexed r;
    lex_bytes(&r, "a\0\0b", 4);
    cr_assert_str_eq(buf_str(&r.tokens),
                     "1:1+1 identifier a\n1:4+1 identifier b\n1:5+0 ';' (auto)\n"
                     "1:5+0 end of file\n");
    cr_assert_str_eq(buf_str(&r.diag.buf),
                     "t.tfx:1:2: error: unexpected character '\\x00'\n"
                     "    1 | a??b\n"
                     "      |  ^~\n");
    cr_assert_eq(r.diag.nerrors, 1);
    lexed_dispose(&r);
}

Test(lex, nul_byte_inside_a_string_is_an_error)
{
    Lexed r;
    lex_bytes(&r, "\"a\0b\"", 5);
    cr_assert_str_eq(buf_str(&r.diag.buf),
                     "t.tfx:1:3: error: unexpected character '\\x00'\n"
                     "    1 | \"a?b\"\n"
                     "      |   ^\n");
    lexed_dispose(&r);
}

Test(lex, invalid_utf8_and_non_ascii_outside_strings_is_one_error_per_run)
{
    check_lex("x = \xc3\xa9 + \xff\xfe\xc3\n",
              "1:1+1 identifier x\n1:3+1 '='\n1:8+1 '+'\n2:1+0 end of file\n",
              "t.tfx:1:5: error: unexpected character '\\xc3'\n"
              "    1 | x = ?? + ???\n"
              "      |     ^~\n"
              "t.tfx:1:10: error: unexpected character '\\xff'\n"
              "    1 | x = ?? + ???\n"
              "      |          ^~~\n");
}

Test(lex, unterminated_string_at_newline_and_at_end_of_file)
{
    check_lex("s = \"abc\nt = \"x\\",
              "1:1+1 identifier s\n1:3+1 '='\n1:5+4 string literal \"abc\"\n"
              "1:9+0 ';' (auto)\n"
              "2:1+1 identifier t\n2:3+1 '='\n2:5+3 string literal \"x\\\\\"\n"
              "2:8+0 ';' (auto)\n2:8+0 end of file\n",
              "t.tfx:1:5: error: unterminated string\n"
              "    1 | s = \"abc\n"
              "      |     ^~~~\n"
              "t.tfx:2:5: error: unterminated string\n"
              "    2 | t = \"x\\\n"
              "      |     ^~~\n");
}

Test(lex, unknown_escape_sequence)
{
    check_lex("\"a\\qb\"",
              "1:1+6 string literal \"aqb\"\n1:7+0 ';' (auto)\n1:7+0 end of file\n",
              "t.tfx:1:3: error: unknown escape sequence '\\q'\n"
              "    1 | \"a\\qb\"\n"
              "      |   ^\n");
}

Test(lex, integer_literal_out_of_range)
{
    check_lex("9223372036854775808",
              "1:1+19 integer literal 0\n1:20+0 ';' (auto)\n1:20+0 end of file\n",
              "t.tfx:1:1: error: integer literal out of range\n"
              "    1 | 9223372036854775808\n"
              "      | ^~~~~~~~~~~~~~~~~~~\n");
}

Test(lex, float_literal_out_of_range)
{
    check_lex("1e400 1e-400 1e-310",
              "1:1+5 float literal 0.0\n1:7+6 float literal 0.0\n"
              "1:14+6 float literal 1e-310\n1:20+0 ';' (auto)\n1:20+0 end of file\n",
              "t.tfx:1:1: error: float literal out of range\n"
              "    1 | 1e400 1e-400 1e-310\n"
              "      | ^~~~~\n"
              "t.tfx:1:7: error: float literal out of range\n"
              "    1 | 1e400 1e-400 1e-310\n"
              "      |       ^~~~~~\n");
}

Test(lex, identifier_longer_than_255_bytes)
{
    char src[300];
    memset(src, 'a', 256);
    src[256] = '\0';
    Lexed r;
    lex(&r, src + 1); // 255 bytes: fine
    cr_assert_eq(r.diag.nerrors, 0);
    lexed_dispose(&r);

    lex(&r, src); // 256 bytes
    cr_assert_eq(r.diag.nerrors, 1);
    const char *msg = buf_str(&r.diag.buf);
    const char *want = "t.tfx:1:1: error: identifier longer than 255 bytes\n";
    cr_assert_eq(strncmp(msg, want, strlen(want)), 0, "got: %s", msg);
    cr_assert(strstr(buf_str(&r.tokens), "1:1+256 identifier aaaa") != NULL);
    lexed_dispose(&r);
}
