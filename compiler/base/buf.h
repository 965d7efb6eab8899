/* buf.h - growable text buffer on the heap, used by every printer (AST, IR, dot,
 * diagnostics) so output can go to a string in tests or to a FILE in the driver. */
#ifndef TFX_BASE_BUF_H
#define TFX_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct Buf {
    char  *data; /* always NUL-terminated once anything was appended */
    size_t len, cap;
} Buf;

void buf_init(Buf *b);
void buf_dispose(Buf *b);
void buf_putc(Buf *b, char c);
void buf_puts(Buf *b, const char *s);
void buf_putn(Buf *b, const char *s, size_t n);
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(Buf *b, const char *fmt, va_list ap);
/* Returns the contents ("" when empty); valid until the next append. */
const char *buf_str(Buf *b);

#endif
