/* diag.c - prints diagnostics with the quoted source line and a caret; see diag.h.
 * Unprintable bytes in the quoted line (NUL, control, invalid UTF-8) print as '?', so
 * the output is always valid text whatever the input file holds. */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void diag_init(DiagEngine *d, FILE *out)
{
    memset(d, 0, sizeof *d);
    d->out = out;
    buf_init(&d->buf);
}

void diag_dispose(DiagEngine *d)
{
    free(d->files);
    buf_dispose(&d->buf);
    d->files = NULL;
    d->nfiles = 0;
}

uint32_t diag_add_file(DiagEngine *d, const char *path, const char *text, uint32_t len)
{
    SrcFile *f = realloc(d->files, sizeof(SrcFile) * (d->nfiles + 1));
    if (!f) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        abort();
    }
    d->files = f;
    d->files[d->nfiles] = (SrcFile){ path, text, len };
    return d->nfiles++;
}

SrcSpan span_join(SrcSpan a, SrcSpan b)
{
    if (a.line == 0)
        return b;
    if (b.line == 0 || b.file != a.file)
        return a;
    SrcSpan s = a;
    if (b.end > s.end)
        s.end = b.end;
    return s;
}

void span_format(const DiagEngine *d, SrcSpan s, char *out, size_t outsz)
{
    const char *path = s.file < d->nfiles ? d->files[s.file].path : "<unknown>";
    snprintf(out, outsz, "%s:%u:%u", path, (unsigned)s.line, (unsigned)s.col);
}

static void emit(DiagEngine *d, const char *s)
{
    if (d->out)
        fputs(s, d->out);
    else
        buf_puts(&d->buf, s);
}

static const char *level_name(DiagLevel level)
{
    switch (level) {
    case DIAG_ERROR: return "error";
    case DIAG_WARNING: return "warning";
    case DIAG_NOTE: return "note";
    }
    return "error";
}

/* Quotes the line holding span.begin and underlines [begin, end) clipped to that line. */
static void quote_line(DiagEngine *d, Buf *b, SrcSpan s)
{
    const SrcFile *f = &d->files[s.file];
    if (s.begin > f->len)
        return;
    uint32_t bol = s.begin;
    while (bol > 0 && f->text[bol - 1] != '\n')
        bol--;
    uint32_t eol = s.begin;
    while (eol < f->len && f->text[eol] != '\n')
        eol++;
    enum { MAX_QUOTE = 200 };
    uint32_t shown_end = eol - bol > MAX_QUOTE ? bol + MAX_QUOTE : eol;
    buf_printf(b, "%5u | ", (unsigned)s.line);
    for (uint32_t i = bol; i < shown_end; i++) {
        unsigned char c = (unsigned char)f->text[i];
        buf_putc(b, c == '\t' ? ' ' : (c < 32 || c >= 127) ? '?' : (char)c);
    }
    if (shown_end < eol)
        buf_puts(b, "...");
    buf_puts(b, "\n      | ");
    for (uint32_t i = bol; i < s.begin && i < shown_end; i++)
        buf_putc(b, ' ');
    uint32_t stop = s.end < eol ? s.end : eol;
    if (stop > shown_end)
        stop = shown_end;
    buf_putc(b, '^');
    for (uint32_t i = s.begin + 1; i < stop; i++)
        buf_putc(b, '~');
    buf_putc(b, '\n');
}

void diag_vreport(DiagEngine *d, DiagLevel level, SrcSpan span, const char *fmt, va_list ap)
{
    if (level == DIAG_ERROR) {
        d->nerrors++;
        if (d->max_errors && d->nerrors > d->max_errors) {
            if (d->nerrors == d->max_errors + 1)
                emit(d, "tfxc: too many errors, stopping\n");
            return;
        }
    } else if (level == DIAG_WARNING) {
        d->nwarnings++;
    } else if (d->max_errors && d->nerrors > d->max_errors) {
        return; /* notes of dropped errors */
    }
    Buf b;
    buf_init(&b);
    bool has_loc = span.line != 0 && span.file < d->nfiles;
    if (has_loc)
        buf_printf(&b, "%s:%u:%u: ", d->files[span.file].path, (unsigned)span.line,
                   (unsigned)span.col);
    else
        buf_puts(&b, "tfxc: ");
    buf_printf(&b, "%s: ", level_name(level));
    buf_vprintf(&b, fmt, ap);
    buf_putc(&b, '\n');
    if (has_loc)
        quote_line(d, &b, span);
    emit(d, buf_str(&b));
    buf_dispose(&b);
}

void diag_report(DiagEngine *d, DiagLevel level, SrcSpan span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(d, level, span, fmt, ap);
    va_end(ap);
}

void diag_error(DiagEngine *d, SrcSpan span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(d, DIAG_ERROR, span, fmt, ap);
    va_end(ap);
}

void diag_note(DiagEngine *d, SrcSpan span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(d, DIAG_NOTE, span, fmt, ap);
    va_end(ap);
}
