/* rt_json.h - a small strict JSON parser (RFC 8259) for safetensors headers: recursive
 * descent with a nesting limit, every node allocated through the model's hook, positions
 * kept for messages. Called only by rt_safetensors.c. */
#ifndef TFX_RUNTIME_RT_JSON_H
#define TFX_RUNTIME_RT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "rt.h"

/* Deeper nesting is rejected; a safetensors header needs 3 levels. */
#define RT_JSON_MAX_DEPTH 64

typedef enum RtJsonKind {
    RT_JSON_NULL,
    RT_JSON_FALSE,
    RT_JSON_TRUE,
    RT_JSON_NUMBER,
    RT_JSON_STRING,
    RT_JSON_ARRAY,
    RT_JSON_OBJECT,
} RtJsonKind;

typedef struct RtJson RtJson;
struct RtJson {
    RtJsonKind kind;
    size_t     pos;       /* byte offset of the value in the parsed text */
    char      *key;       /* member name when the parent is an object, else NULL */
    RtJson    *next;      /* next element or member of the parent */
    /* RT_JSON_STRING: the decoded UTF-8 text (no NUL inside). */
    char      *str;
    /* RT_JSON_NUMBER: the literal, and its value when it is a non-negative integer that
     * fits in int64_t (is_uint); -0, fractions and exponents are not. */
    const char *num;      /* points into the parsed text; num_len bytes */
    size_t      num_len;
    int         is_uint;
    int64_t     uint;
    /* RT_JSON_ARRAY and RT_JSON_OBJECT: the children in text order. */
    RtJson    *first;
    size_t     count;
};

/* Parses text[0 .. len) as one JSON value (surrounded by optional whitespace) into *out.
 * Returns TFX_OK, TFX_ERR_HEADER (with a message "... at byte N: ..." relative to
 * `base_pos + offset`) or TFX_ERR_NOMEM; on failure *out is NULL and nothing leaks. */
int rt_json_parse(const RtAlloc *a, const char *text, size_t len, size_t base_pos,
                  RtJson **out, tfx_error *err);
/* Frees a tree from rt_json_parse; NULL is ignored. */
void rt_json_free(const RtAlloc *a, RtJson *v);
/* The name of a kind for messages ("an object", "a string", ...). */
const char *rt_json_kind_name(RtJsonKind k);

#endif
