/* sema_env.c - environments (name -> Value) and value helpers for sema. Environments
 * are small, so lookups are linear; every binding is arena-owned. */
#include "sema_int.h"

#include <string.h>

Env *env_new(Sema *s, Env *outer)
{
    Env *e = ARENA_NEW(s->a, Env);
    e->outer = outer;
    return e;
}

Binding *env_lookup(Env *e, const char *name)
{
    for (; e; e = e->outer)
        for (uint32_t i = e->n; i-- > 0;)
            if (strcmp(e->b[i].name, name) == 0)
                return &e->b[i];
    return NULL;
}

void env_set(Sema *s, Env *e, const char *name, Value v, SrcSpan span)
{
    for (uint32_t i = 0; i < e->n; i++) {
        if (strcmp(e->b[i].name, name) == 0) {
            e->b[i].v = v;
            e->b[i].span = span;
            return;
        }
    }
    if (e->n == e->cap) {
        uint32_t cap = e->cap ? e->cap * 2 : 8;
        e->b = arena_grow(s->a, e->b, sizeof(Binding) * e->n, sizeof(Binding) * cap);
        e->cap = cap;
    }
    e->b[e->n++] = (Binding){ name, v, span };
}

Value v_none(void) { return (Value){ .kind = VK_NONE }; }
Value v_int(int64_t i) { return (Value){ .kind = VK_INT, .u.i = dim_const(i) }; }
Value v_dim(Dim d) { return (Value){ .kind = VK_INT, .u.i = d }; }
Value v_float(double f) { return (Value){ .kind = VK_FLOAT, .u.f = f }; }
Value v_tensor(IrValue *t) { return (Value){ .kind = VK_TENSOR, .u.t = t }; }

const char *vkind_name(VKind k)
{
    switch (k) {
    case VK_NONE: return "nothing";
    case VK_INT: return "int";
    case VK_FLOAT: return "float";
    case VK_BOOL: return "bool";
    case VK_STR: return "string";
    case VK_MASK: return "mask";
    case VK_FN: return "fn";
    case VK_TENSOR: return "tensor";
    case VK_TUPLE: return "tuple";
    case VK_LIST: return "list";
    }
    return "?";
}

void value_describe(Sema *s, Buf *b, const Value *v)
{
    switch (v->kind) {
    case VK_TENSOR:
        type_print(b, s->m, v->u.t->dtype, &v->u.t->shape);
        return;
    case VK_TUPLE:
        buf_puts(b, "(");
        for (uint32_t i = 0; i < v->u.tuple.n; i++) {
            if (i)
                buf_puts(b, ", ");
            value_describe(s, b, &v->u.tuple.items[i]);
        }
        buf_puts(b, ")");
        return;
    default:
        buf_puts(b, vkind_name(v->kind));
    }
}

const char *type_str(Sema *s, DType dt, const Shape *sh)
{
    Buf b;
    buf_init(&b);
    type_print(&b, s->m, dt, sh);
    const char *r = arena_strdup(s->a, buf_str(&b));
    buf_dispose(&b);
    return r;
}

const char *value_str(Sema *s, const Value *v)
{
    Buf b;
    buf_init(&b);
    value_describe(s, &b, v);
    const char *r = arena_strdup(s->a, buf_str(&b));
    buf_dispose(&b);
    return r;
}
