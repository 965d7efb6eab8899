/* diag.h - source files, spans and the diagnostic engine: the only code that prints
 * user-facing errors. Every stage reports through diag_report(); messages read
 * `file:line:col: error: text`, then the source line and a caret under the span. */
#ifndef TFX_FRONT_DIAG_H
#define TFX_FRONT_DIAG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../base/buf.h"

/* A half-open byte range [begin, end) in file `file` (an index into DiagEngine.files),
 * with the 1-based line and column of `begin`. Zero-filled means "no location". */
typedef struct SrcSpan {
    uint32_t file;
    uint32_t begin, end;
    uint32_t line, col;
} SrcSpan;

typedef struct SrcFile {
    const char *path; /* as the user named it (never made absolute) */
    const char *text; /* may contain NUL bytes; len is authoritative */
    uint32_t    len;
} SrcFile;

typedef enum DiagLevel { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagLevel;

typedef struct DiagEngine {
    SrcFile *files;  /* owned by the caller (the compile session) */
    uint32_t nfiles;
    FILE    *out;    /* where messages go; NULL means into `buf` */
    Buf      buf;    /* collected text when out == NULL (tests) */
    int      nerrors, nwarnings;
    int      max_errors; /* 0 = unlimited; after that many, later errors are dropped */
} DiagEngine;

void diag_init(DiagEngine *d, FILE *out);
void diag_dispose(DiagEngine *d);
/* Adds a file (the engine keeps the pointers, not copies) and returns its index. */
uint32_t diag_add_file(DiagEngine *d, const char *path, const char *text, uint32_t len);

void diag_report(DiagEngine *d, DiagLevel level, SrcSpan span, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_vreport(DiagEngine *d, DiagLevel level, SrcSpan span, const char *fmt, va_list ap);
/* Shorthands. */
void diag_error(DiagEngine *d, SrcSpan span, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_note(DiagEngine *d, SrcSpan span, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A span covering a and b (a must come first in the same file). */
SrcSpan span_join(SrcSpan a, SrcSpan b);
/* "file:line:col" for a span, into an arena-free static-free buffer given by the caller. */
void span_format(const DiagEngine *d, SrcSpan s, char *out, size_t outsz);

#endif
