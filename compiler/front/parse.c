/* parse.c - glue around grammar/: sets up the shared LexState, owns the reentrant flex
 * scanner for one file, runs the pure bison parser and returns the AST_FILE (see parse.h).
 * Also holds the parse's error counting and halting, used by scanner and parser alike,
 * and the token dump used by the scanner tests. */
#define _POSIX_C_SOURCE 200809L
#include "parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tfx.tab.h"
#include "tfx.lex.h"

void parse_state_init(LexState *ls, Arena *a, DiagEngine *d, uint32_t file)
{
    const SrcFile *f = &d->files[file];
    *ls = (LexState){
        .file = file, .text = f->text, .len = f->len,
        .offset = 0, .line = 1, .col = 1,
        .arena = a, .diag = d,
        .skip_to = -1,
        .errors_at_start = d->nerrors,
    };
    SrcSpan whole = { .file = file, .begin = 0, .end = f->len, .line = 1, .col = 1 };
    ls->ast = ast_file(a, whole);
}

void parse_halt(LexState *ls)
{
    ls->halted = true;
}

void parse_error(LexState *ls, SrcSpan at, const char *fmt, ...)
{
    if (ls->halted)
        return;
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(ls->diag, DIAG_ERROR, at, fmt, ap);
    va_end(ap);
    if (ls->diag->nerrors - ls->errors_at_start >= PARSE_MAX_ERRORS)
        parse_halt(ls);
}

/* Creates the scanner over the file's bytes (NUL bytes included: the length comes from
 * the SrcFile, never strlen). Out of memory here is fatal, like everywhere in tfxc. */
static yyscan_t scanner_open(LexState *ls)
{
    yyscan_t scanner;
    if (yylex_init_extra(ls, &scanner) != 0) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        abort();
    }
    yy_scan_bytes(ls->text, (int)ls->len, scanner);
    return scanner;
}

AstNode *parse_file(Arena *a, DiagEngine *d, uint32_t file_id)
{
    LexState ls;
    parse_state_init(&ls, a, d, file_id);
    yyscan_t scanner = scanner_open(&ls);
    // 0: parsed (perhaps after recovering from errors); 1: gave up on an error that could
    // not be recovered from or after a halt; 2: stack exhausted (already reported).
    // Either way ls.ast holds every declaration completed so far.
    int rc = yyparse(scanner, &ls);
    yylex_destroy(scanner); // also frees the buffer made by yy_scan_bytes
    if (rc != 0 && d->nerrors == ls.errors_at_start) {
        // Cannot happen (every way to fail reports first), but failure must never be silent.
        SrcSpan end = { .file = file_id, .begin = ls.len, .end = ls.len, .line = ls.line,
                        .col = ls.col };
        diag_error(d, end, "syntax error");
    }
    return ls.ast;
}

/* `line:col+length kind [value]` for one token. */
static void dump_token(Buf *out, const LexState *ls, int tok, const YYSTYPE *val, SrcSpan at)
{
    buf_printf(out, "%u:%u+%u ", (unsigned)at.line, (unsigned)at.col,
               (unsigned)(at.end - at.begin));
    parse_token_text(out, tok);
    switch (tok) {
    case TOK_IDENT: buf_printf(out, " %s", val->TOK_IDENT); break;
    case TOK_INT: buf_printf(out, " %lld", (long long)val->TOK_INT); break;
    case TOK_FLOAT:
        buf_putc(out, ' ');
        ast_format_float(out, val->TOK_FLOAT);
        break;
    case TOK_STRING:
        buf_putc(out, ' ');
        ast_format_string(out, val->TOK_STRING);
        break;
    default:
        if (tok == ';' && ls->last_auto)
            buf_puts(out, " (auto)");
    }
    buf_putc(out, '\n');
}

void parse_dump_tokens(Arena *a, DiagEngine *d, uint32_t file, Buf *out)
{
    LexState ls;
    parse_state_init(&ls, a, d, file);
    yyscan_t scanner = scanner_open(&ls);
    for (;;) {
        YYSTYPE val = { 0 };
        SrcSpan at = { 0 };
        int tok = yylex(&val, &at, scanner);
        dump_token(out, &ls, tok, &val, at);
        if (tok == TOK_YYEOF)
            break;
    }
    yylex_destroy(scanner);
}
