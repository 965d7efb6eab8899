/* rt_json.c - strict recursive-descent JSON parser (RFC 8259) for safetensors headers.
 * Rejects everything the RFC rejects (leading zeros, trailing commas, control characters
 * in strings, lone surrogates, invalid UTF-8, trailing text) and nesting deeper than
 * RT_JSON_MAX_DEPTH. Errors carry the byte offset in the file. */
#include "rt_json.h"

#include <string.h>

typedef struct JsonParser {
    const RtAlloc *a;
    const char    *s;     /* the text; not NUL-terminated */
    size_t         len;
    size_t         pos;   /* next byte to read */
    size_t         base;  /* file offset of s[0], for messages */
    tfx_error     *err;
    int            code;  /* TFX_OK until the first error */
} JsonParser;

static RtJson *parse_value(JsonParser *p, int depth);

/* Records the first error only: later ones are consequences. */
static RtJson *syntax_error(JsonParser *p, size_t at, const char *what)
{
    if (p->code == TFX_OK)
        p->code = rt_fail(p->err, TFX_ERR_HEADER, "malformed header JSON at byte %zu: %s",
                          p->base + at, what);
    return NULL;
}

static RtJson *out_of_memory(JsonParser *p)
{
    if (p->code == TFX_OK)
        p->code = rt_fail(p->err, TFX_ERR_NOMEM, "out of memory while parsing the header");
    return NULL;
}

static int peek(const JsonParser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static void skip_ws(JsonParser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        p->pos++;
    }
}

static RtJson *new_node(JsonParser *p, RtJsonKind kind, size_t pos)
{
    RtJson *v = rt_alloc_array(p->a, 1, sizeof *v);
    if (!v)
        return out_of_memory(p);
    v->kind = kind;
    v->pos = pos;
    return v;
}

void rt_json_free(const RtAlloc *a, RtJson *v)
{
    if (!v)
        return;
    RtJson *c = v->first;
    while (c) {
        RtJson *next = c->next;
        rt_json_free(a, c);
        c = next;
    }
    rt_free(a, v->key);
    rt_free(a, v->str);
    rt_free(a, v);
}

const char *rt_json_kind_name(RtJsonKind k)
{
    switch (k) {
    case RT_JSON_NULL:   return "null";
    case RT_JSON_FALSE:
    case RT_JSON_TRUE:   return "a boolean";
    case RT_JSON_NUMBER: return "a number";
    case RT_JSON_STRING: return "a string";
    case RT_JSON_ARRAY:  return "an array";
    case RT_JSON_OBJECT: return "an object";
    }
    return "?";
}

/* ---- strings ---- */

/* Length of the valid UTF-8 sequence at s (avail bytes), or 0 if it is invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    else if (c >= 0xC2 && c <= 0xDF)
        n = 2, min = 0x80, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, min = 0x800, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static size_t utf8_encode(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the 4 hex digits of a \u escape at p->pos; -1 if they are not hex digits. */
static long read_hex4(JsonParser *p)
{
    if (p->len - p->pos < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + (size_t)i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    p->pos += 4;
    return v;
}

/* After "\u": decodes one code point, joining a surrogate pair; -1 after an error. */
static long read_unicode_escape(JsonParser *p, size_t esc_pos)
{
    long cp = read_hex4(p);
    if (cp < 0)
        return syntax_error(p, esc_pos, "invalid \\u escape"), -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return syntax_error(p, esc_pos, "unpaired surrogate in \\u escape"), -1;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return syntax_error(p, esc_pos, "unpaired surrogate in \\u escape"), -1;
        p->pos += 2;
        long lo = read_hex4(p);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return syntax_error(p, esc_pos, "unpaired surrogate in \\u escape"), -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0)
        return syntax_error(p, esc_pos, "\\u0000 is not allowed in strings"), -1;
    return cp;
}

static const char *simple_escape(char c)
{
    switch (c) {
    case '"':  return "\"";
    case '\\': return "\\";
    case '/':  return "/";
    case 'b':  return "\b";
    case 'f':  return "\f";
    case 'n':  return "\n";
    case 'r':  return "\r";
    case 't':  return "\t";
    default:   return NULL;
    }
}

/* Decodes the string whose opening quote is at p->pos into out (which has room for the
 * raw text); returns its length or -1 after an error. */
static long decode_string(JsonParser *p, char *out)
{
    size_t n = 0;
    p->pos++;   // the opening quote
    for (;;) {
        if (p->pos >= p->len)
            return syntax_error(p, p->pos, "unterminated string"), -1;
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            return (long)n;
        }
        if (c < 0x20)
            return syntax_error(p, p->pos, "control character in string"), -1;
        if (c != '\\') {
            size_t k = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (k == 0)
                return syntax_error(p, p->pos, "invalid UTF-8 in string"), -1;
            memcpy(out + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
            continue;
        }
        size_t esc_pos = p->pos++;
        if (p->pos >= p->len)
            return syntax_error(p, p->pos, "unterminated string"), -1;
        char e = p->s[p->pos++];
        const char *simple = simple_escape(e);
        if (simple) {
            out[n++] = simple[0];
        } else if (e == 'u') {
            long cp = read_unicode_escape(p, esc_pos);
            if (cp < 0)
                return -1;
            n += utf8_encode(out + n, (unsigned)cp);
        } else {
            return syntax_error(p, esc_pos, "invalid escape in string"), -1;
        }
    }
}

/* string = '"' chars '"'; returns a NUL-terminated copy, or NULL after an error. */
static char *parse_string_text(JsonParser *p)
{
    // Decoded text is never longer than the raw text, which ends at the latest at len.
    char *out = rt_alloc(p->a, p->len - p->pos + 1);
    if (!out)
        return out_of_memory(p), NULL;
    long n = decode_string(p, out);
    if (n < 0) {
        rt_free(p->a, out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

static RtJson *parse_string(JsonParser *p)
{
    RtJson *v = new_node(p, RT_JSON_STRING, p->pos);
    if (!v)
        return NULL;
    v->str = parse_string_text(p);
    if (!v->str) {
        rt_free(p->a, v);
        return NULL;
    }
    return v;
}

/* ---- numbers and literals ---- */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* number = [ '-' ] ( '0' | [1-9] digit* ) [ '.' digit+ ] [ ( 'e' | 'E' ) [ '+' | '-' ] digit+ ] */
static RtJson *parse_number(JsonParser *p)
{
    size_t start = p->pos;
    int is_uint = 1;
    if (peek(p) == '-')
        p->pos++, is_uint = 0;
    if (peek(p) == '0') {
        p->pos++;
        if (is_digit(peek(p)))
            return syntax_error(p, start, "bad number: leading zero");
    } else if (is_digit(peek(p))) {
        while (is_digit(peek(p)))
            p->pos++;
    } else {
        return syntax_error(p, start, "bad number");
    }
    if (peek(p) == '.') {
        p->pos++, is_uint = 0;
        if (!is_digit(peek(p)))
            return syntax_error(p, start, "bad number: digit expected after '.'");
        while (is_digit(peek(p)))
            p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++, is_uint = 0;
        if (peek(p) == '+' || peek(p) == '-')
            p->pos++;
        if (!is_digit(peek(p)))
            return syntax_error(p, start, "bad number: digit expected in exponent");
        while (is_digit(peek(p)))
            p->pos++;
    }
    RtJson *v = new_node(p, RT_JSON_NUMBER, start);
    if (!v)
        return NULL;
    v->num = p->s + start;
    v->num_len = p->pos - start;
    for (size_t i = start; is_uint && i < p->pos; i++)
        if (__builtin_mul_overflow(v->uint, 10, &v->uint) ||
            __builtin_add_overflow(v->uint, p->s[i] - '0', &v->uint))
            is_uint = 0;
    v->is_uint = is_uint;
    return v;
}

static RtJson *parse_literal(JsonParser *p)
{
    static const struct { const char *text; RtJsonKind kind; } lits[] = {
        { "null", RT_JSON_NULL }, { "true", RT_JSON_TRUE }, { "false", RT_JSON_FALSE },
    };
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        size_t n = strlen(lits[i].text);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, lits[i].text, n) == 0) {
            RtJson *v = new_node(p, lits[i].kind, p->pos);
            p->pos += n;
            return v;
        }
    }
    return syntax_error(p, p->pos, p->pos < p->len ? "unexpected character" : "expected a value");
}

/* ---- arrays and objects ---- */

static void append_child(RtJson *parent, RtJson **tail, RtJson *child)
{
    if (*tail)
        (*tail)->next = child;
    else
        parent->first = child;
    *tail = child;
    parent->count++;
}

/* array = '[' [ value { ',' value } ] ']' */
static RtJson *parse_array(JsonParser *p, int depth)
{
    RtJson *arr = new_node(p, RT_JSON_ARRAY, p->pos);
    if (!arr)
        return NULL;
    RtJson *tail = NULL;
    p->pos++;
    skip_ws(p);
    if (peek(p) == ']') {
        p->pos++;
        return arr;
    }
    for (;;) {
        RtJson *item = parse_value(p, depth + 1);
        if (!item)
            break;
        append_child(arr, &tail, item);
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == ']')
            return arr;
        if (c != ',') {
            syntax_error(p, p->pos - 1, "expected ',' or ']' in array");
            break;
        }
    }
    rt_json_free(p->a, arr);
    return NULL;
}

/* member = string ':' value */
static RtJson *parse_member(JsonParser *p, int depth)
{
    skip_ws(p);
    if (peek(p) != '"')
        return syntax_error(p, p->pos, "expected a member name (a string)");
    char *key = parse_string_text(p);
    if (!key)
        return NULL;
    skip_ws(p);
    if (peek(p) != ':') {
        rt_free(p->a, key);
        return syntax_error(p, p->pos, "expected ':' after the member name");
    }
    p->pos++;
    RtJson *v = parse_value(p, depth + 1);
    if (!v) {
        rt_free(p->a, key);
        return NULL;
    }
    v->key = key;
    return v;
}

/* object = '{' [ member { ',' member } ] '}' */
static RtJson *parse_object(JsonParser *p, int depth)
{
    RtJson *obj = new_node(p, RT_JSON_OBJECT, p->pos);
    if (!obj)
        return NULL;
    RtJson *tail = NULL;
    p->pos++;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
        return obj;
    }
    for (;;) {
        RtJson *m = parse_member(p, depth);
        if (!m)
            break;
        append_child(obj, &tail, m);
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == '}')
            return obj;
        if (c != ',') {
            syntax_error(p, p->pos - 1, "expected ',' or '}' in object");
            break;
        }
    }
    rt_json_free(p->a, obj);
    return NULL;
}

/* value = object | array | string | number | 'true' | 'false' | 'null' */
static RtJson *parse_value(JsonParser *p, int depth)
{
    skip_ws(p);
    int c = peek(p);
    if ((c == '{' || c == '[') && depth >= RT_JSON_MAX_DEPTH)
        return syntax_error(p, p->pos, "nesting deeper than 64 levels");
    switch (c) {
    case '{': return parse_object(p, depth);
    case '[': return parse_array(p, depth);
    case '"': return parse_string(p);
    case -1:  return syntax_error(p, p->pos, "expected a value");
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p);
        return parse_literal(p);
    }
}

int rt_json_parse(const RtAlloc *a, const char *text, size_t len, size_t base_pos,
                  RtJson **out, tfx_error *err)
{
    JsonParser p = { .a = a, .s = text, .len = len, .base = base_pos, .err = err };
    RtJson *v = parse_value(&p, 0);
    if (v) {
        skip_ws(&p);
        if (p.pos < p.len) {
            syntax_error(&p, p.pos, "unexpected text after the top-level value");
            rt_json_free(a, v);
            v = NULL;
        }
    }
    *out = v;
    return v ? TFX_OK : p.code;
}
