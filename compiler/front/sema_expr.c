/* sema_expr.c - evaluation of expressions: compile-time arithmetic on ints (symbolic
 * dimensions included) and floats, and lowering of tensor expressions to IR ops with
 * dtype and shape checks. Every error names the expression's span and both types. */
#include "sema_int.h"

#include <math.h>
#include <string.h>

static bool is_num(const Value *v) { return v->kind == VK_INT || v->kind == VK_FLOAT; }

static double as_double(const Value *v)
{
    if (v->kind == VK_FLOAT)
        return v->u.f;
    return (double)v->u.i.c;
}

IrValue *sema_emit(Sema *s, Frame *f, IrOpKind k, IrValue **ops, uint32_t n, SrcSpan span)
{
    IrOp *op = ir_op_append(s->m, f->region, k, ops, n, 1, span);
    const char *err = ir_infer(s->m, op);
    if (err) {
        Buf b;
        buf_init(&b);
        for (uint32_t i = 0; i < n; i++) {
            buf_puts(&b, i ? ", " : "");
            type_print(&b, s->m, ops[i]->dtype, &ops[i]->shape);
        }
        diag_error(s->d, span, "%s: %s (operands: %s)", ir_op_info[k].name, err, buf_str(&b));
        buf_dispose(&b);
        ir_op_erase(op);
        return NULL;
    }
    return op->results[0];
}

IrValue *sema_emit_const(Sema *s, Frame *f, double value, DType dt, const Shape *sh, SrcSpan span)
{
    IrOp *op = ir_op_append(s->m, f->region, IR_OP_CONST, NULL, 0, 1, span);
    op->attrs.f = value;
    op->results[0]->dtype = dt;
    op->results[0]->shape = *sh;
    return op->results[0];
}

IrValue *sema_as_tensor(Sema *s, Frame *f, Value v, DType dt, SrcSpan span)
{
    Shape scalar = { 0 };
    switch (v.kind) {
    case VK_TENSOR:
        return v.u.t;
    case VK_INT:
        if (!dim_is_const(v.u.i)) {
            diag_error(s->d, span, "a run-time dimension cannot be used as a tensor value yet");
            return NULL;
        }
        return sema_emit_const(s, f, (double)v.u.i.c, dt, &scalar, span);
    case VK_FLOAT:
        if (dt == DT_I32) {
            diag_error(s->d, span, "cannot use a float constant with an i32 tensor");
            return NULL;
        }
        return sema_emit_const(s, f, v.u.f, dt, &scalar, span);
    case VK_BOOL:
        return sema_emit_const(s, f, v.u.b ? 1.0 : 0.0, dt, &scalar, span);
    case VK_NONE:
        return NULL;
    default:
        diag_error(s->d, span, "expected a tensor or a number, found a %s", vkind_name(v.kind));
        return NULL;
    }
}

/* ---- compile-time arithmetic ---- */

static Value const_int_binary(Sema *s, AstOp op, Dim a, Dim b, SrcSpan span)
{
    Dim r;
    bool ac = dim_is_const(a), bc = dim_is_const(b);
    switch (op) {
    case AST_OP_ADD:
        if (dim_add(a, b, &r)) return v_dim(r);
        break;
    case AST_OP_SUB:
        if (dim_sub(a, b, &r)) return v_dim(r);
        break;
    case AST_OP_MUL:
        if (dim_mul(a, b, &r)) return v_dim(r);
        break;
    case AST_OP_DIV:
        if (bc && b.c == 0) {
            diag_error(s->d, span, "division by zero");
            return v_none();
        }
        if (ac && bc)
            return a.c % b.c == 0 ? v_int(a.c / b.c) : v_float((double)a.c / (double)b.c);
        if (bc && b.c > 0 && dim_div(a, b, &r)) return v_dim(r);
        break;
    case AST_OP_MOD:
        if (ac && bc) {
            if (b.c == 0) {
                diag_error(s->d, span, "division by zero");
                return v_none();
            }
            return v_int(a.c % b.c);
        }
        break;
    case AST_OP_POW:
        if (ac && bc && b.c >= 0 && b.c < 63) {
            int64_t p = 1;
            for (int64_t i = 0; i < b.c; i++) {
                if (__builtin_mul_overflow(p, a.c, &p)) {
                    diag_error(s->d, span, "integer overflow in '**'");
                    return v_none();
                }
            }
            return v_int(p);
        }
        if (ac && bc) return v_float(pow((double)a.c, (double)b.c));
        break;
    case AST_OP_LT: if (ac && bc) return (Value){ .kind = VK_BOOL, .u.b = a.c < b.c }; break;
    case AST_OP_LE: if (ac && bc) return (Value){ .kind = VK_BOOL, .u.b = a.c <= b.c }; break;
    case AST_OP_GT: if (ac && bc) return (Value){ .kind = VK_BOOL, .u.b = a.c > b.c }; break;
    case AST_OP_GE: if (ac && bc) return (Value){ .kind = VK_BOOL, .u.b = a.c >= b.c }; break;
    case AST_OP_EQ: return (Value){ .kind = VK_BOOL, .u.b = dim_eq(a, b) };
    case AST_OP_NE: return (Value){ .kind = VK_BOOL, .u.b = !dim_eq(a, b) };
    default:
        break;
    }
    Buf ba, bb;
    buf_init(&ba);
    buf_init(&bb);
    dim_print(&ba, s->m, a);
    dim_print(&bb, s->m, b);
    diag_error(s->d, span, "cannot compute '%s %s %s' at compile time", buf_str(&ba),
               ast_op_text(op), buf_str(&bb));
    buf_dispose(&ba);
    buf_dispose(&bb);
    return v_none();
}

static Value const_float_binary(Sema *s, AstOp op, double a, double b, SrcSpan span)
{
    switch (op) {
    case AST_OP_ADD: return v_float(a + b);
    case AST_OP_SUB: return v_float(a - b);
    case AST_OP_MUL: return v_float(a * b);
    case AST_OP_DIV:
        if (b == 0.0) {
            diag_error(s->d, span, "division by zero");
            return v_none();
        }
        return v_float(a / b);
    case AST_OP_POW: return v_float(pow(a, b));
    case AST_OP_MOD: return v_float(fmod(a, b));
    case AST_OP_LT: return (Value){ .kind = VK_BOOL, .u.b = a < b };
    case AST_OP_LE: return (Value){ .kind = VK_BOOL, .u.b = a <= b };
    case AST_OP_GT: return (Value){ .kind = VK_BOOL, .u.b = a > b };
    case AST_OP_GE: return (Value){ .kind = VK_BOOL, .u.b = a >= b };
    case AST_OP_EQ: return (Value){ .kind = VK_BOOL, .u.b = a == b };
    case AST_OP_NE: return (Value){ .kind = VK_BOOL, .u.b = a != b };
    default:
        diag_error(s->d, span, "internal error: operator '%s' on two numbers", ast_op_text(op));
        return v_none();
    }
}

/* ---- tensor arithmetic ---- */

static IrOpKind binary_kind(AstOp op)
{
    switch (op) {
    case AST_OP_ADD: return IR_OP_ADD;
    case AST_OP_SUB: return IR_OP_SUB;
    case AST_OP_MUL: return IR_OP_MUL;
    case AST_OP_DIV: return IR_OP_DIV;
    case AST_OP_MOD: return IR_OP_MOD;
    case AST_OP_POW: return IR_OP_POW;
    case AST_OP_MATMUL: return IR_OP_MATMUL;
    case AST_OP_LT: return IR_OP_LT;
    case AST_OP_LE: return IR_OP_LE;
    case AST_OP_GT: return IR_OP_GT;
    case AST_OP_GE: return IR_OP_GE;
    case AST_OP_EQ: return IR_OP_EQ;
    case AST_OP_NE: return IR_OP_NE;
    default: return IR_OP_ADD;
    }
}

static Value tensor_binary(Sema *s, Frame *f, AstOp op, Value a, Value b, SrcSpan span)
{
    DType dt = a.kind == VK_TENSOR ? a.u.t->dtype : b.u.t->dtype;
    IrValue *x = sema_as_tensor(s, f, a, dt, span);
    IrValue *y = sema_as_tensor(s, f, b, dt, span);
    if (!x || !y)
        return v_none();
    const char *tx = type_str(s, x->dtype, &x->shape), *ty = type_str(s, y->dtype, &y->shape);
    if (x->dtype != y->dtype) {
        diag_error(s->d, span, "'%s' on different element types: %s and %s", ast_op_text(op), tx, ty);
        return v_none();
    }
    if (op == AST_OP_MATMUL) {
        const Shape *p = &x->shape, *q = &y->shape;
        if (p->rank < 2 || q->rank < 2) {
            diag_error(s->d, span, "'@' needs operands of rank 2 or more: %s @ %s", tx, ty);
            return v_none();
        }
        if (!dim_eq(p->dims[p->rank - 1], q->dims[q->rank - 2])) {
            diag_error(s->d, span, "'@' inner dimensions differ: %s @ %s", tx, ty);
            return v_none();
        }
        Shape pb = *p, qb = *q, out;
        pb.rank -= 2;
        qb.rank -= 2;
        if (!ir_broadcast(&pb, &qb, &out)) {
            diag_error(s->d, span, "'@' batch dimensions do not broadcast: %s @ %s", tx, ty);
            return v_none();
        }
    } else {
        Shape out;
        if (!ir_broadcast(&x->shape, &y->shape, &out)) {
            diag_error(s->d, span, "shapes do not broadcast in '%s': %s and %s", ast_op_text(op), tx, ty);
            return v_none();
        }
    }
    IrValue *ops[2] = { x, y };
    IrValue *r = sema_emit(s, f, binary_kind(op), ops, 2, span);
    return r ? v_tensor(r) : v_none();
}

Value sema_binary(Sema *s, Frame *f, AstOp op, Value a, Value b, SrcSpan span)
{
    if (a.kind == VK_NONE || b.kind == VK_NONE)
        return v_none();
    if (a.kind == VK_TENSOR || b.kind == VK_TENSOR) {
        if (op == AST_OP_MATMUL && (a.kind != VK_TENSOR || b.kind != VK_TENSOR)) {
            diag_error(s->d, span, "'@' needs two tensors, found %s and %s", value_str(s, &a),
                       value_str(s, &b));
            return v_none();
        }
        return tensor_binary(s, f, op, a, b, span);
    }
    if ((op == AST_OP_EQ || op == AST_OP_NE) && a.kind == b.kind &&
        (a.kind == VK_STR || a.kind == VK_BOOL)) {
        bool eq = a.kind == VK_STR ? strcmp(a.u.s, b.u.s) == 0 : a.u.b == b.u.b;
        return (Value){ .kind = VK_BOOL, .u.b = (op == AST_OP_EQ) == eq };
    }
    if (!is_num(&a) || !is_num(&b)) {
        diag_error(s->d, span, "operator '%s' cannot combine %s and %s", ast_op_text(op),
                   value_str(s, &a), value_str(s, &b));
        return v_none();
    }
    if (op == AST_OP_MATMUL) {
        diag_error(s->d, span, "'@' needs two tensors, found %s and %s", value_str(s, &a),
                   value_str(s, &b));
        return v_none();
    }
    if (a.kind == VK_INT && b.kind == VK_INT)
        return const_int_binary(s, op, a.u.i, b.u.i, span);
    if ((a.kind == VK_INT && !dim_is_const(a.u.i)) || (b.kind == VK_INT && !dim_is_const(b.u.i))) {
        diag_error(s->d, span, "a run-time dimension cannot be mixed with a float");
        return v_none();
    }
    return const_float_binary(s, op, as_double(&a), as_double(&b), span);
}

static Value unary_minus(Sema *s, Frame *f, Value v, SrcSpan span)
{
    switch (v.kind) {
    case VK_NONE: return v;
    case VK_INT: {
        Dim r;
        if (dim_sub(dim_const(0), v.u.i, &r))
            return v_dim(r);
        break;
    }
    case VK_FLOAT: return v_float(-v.u.f);
    case VK_TENSOR: {
        IrValue *x = v.u.t;
        IrValue *r = sema_emit(s, f, IR_OP_NEG, &x, 1, span);
        return r ? v_tensor(r) : v_none();
    }
    default:
        break;
    }
    diag_error(s->d, span, "unary '-' cannot apply to a %s", vkind_name(v.kind));
    return v_none();
}

/* ---- names ---- */

static Value name_value(Sema *s, Frame *f, const AstNode *e)
{
    const char *n = e->u.name.name;
    Binding *b = env_lookup(f->env, n);
    if (b)
        return b->v;
    Decl *d = sema_find_decl(s, n);
    if (d && d->node->kind == AST_CONST) {
        if (d->state == 1) {
            diag_error(s->d, e->span, "constant '%s' is defined in terms of itself", n);
            return v_none();
        }
        if (d->state == 0) {
            d->state = 1;
            Frame cf = *f;
            cf.env = env_new(s, NULL);
            d->value = sema_expr(s, &cf, d->node->u.cdecl.value);
            d->state = 2;
        }
        return d->value;
    }
    if (d && d->node->kind == AST_BLOCK)
        return (Value){ .kind = VK_FN, .u.fn = { NULL, d->node } };
    if (strcmp(n, "causal") == 0)
        return (Value){ .kind = VK_MASK, .u.mask = { IR_MASK_CAUSAL, 0, NULL } };
    if (strcmp(n, "none") == 0)
        return (Value){ .kind = VK_MASK, .u.mask = { IR_MASK_NONE, 0, NULL } };
    if (sema_is_builtin(n))
        return (Value){ .kind = VK_FN, .u.fn = { n, NULL } };
    diag_error(s->d, e->span, "unknown name '%s'", n);
    return v_none();
}

/* ---- indexing ---- */

static bool resolve_bound(Sema *s, Frame *f, const AstNode *e, Dim size, Dim *out)
{
    Value v = sema_expr(s, f, e);
    if (v.kind == VK_NONE)
        return false;
    if (v.kind != VK_INT) {
        diag_error(s->d, e->span, "a slice bound must be an int, found %s", value_str(s, &v));
        return false;
    }
    Dim d = v.u.i;
    if (dim_is_const(d) && d.c < 0) {
        if (!dim_add(size, d, &d)) {
            diag_error(s->d, e->span, "internal error: a negative slice bound does not fit a dimension");
            return false;
        }
    }
    *out = d;
    return true;
}

static IrValue *index_slice(Sema *s, Frame *f, IrValue *x, uint32_t axis, const AstNode *sl)
{
    Dim size = x->shape.dims[axis];
    Dim lo = dim_const(0), hi = size;
    if (sl->u.slice.lo && !resolve_bound(s, f, sl->u.slice.lo, size, &lo))
        return NULL;
    if (sl->u.slice.hi && !resolve_bound(s, f, sl->u.slice.hi, size, &hi))
        return NULL;
    if (dim_is_const(lo) && dim_is_const(hi) && dim_is_const(size) &&
        (lo.c < 0 || hi.c > size.c || lo.c > hi.c)) {
        diag_error(s->d, sl->span, "slice [%lld:%lld] is out of range for a dimension of size %lld",
                   (long long)lo.c, (long long)hi.c, (long long)size.c);
        return NULL;
    }
    Dim len;
    bool neg = !dim_sub(hi, lo, &len) || (dim_is_const(len) && len.c < 0);
    for (unsigned i = 0; !neg && i < len.nterms; i++)
        neg = len.coef[i] < 0;
    if (neg) {
        Buf bl, bh;
        buf_init(&bl);
        buf_init(&bh);
        dim_print(&bl, s->m, lo);
        dim_print(&bh, s->m, hi);
        diag_error(s->d, sl->span, "slice [%s:%s] can have a negative length", buf_str(&bl), buf_str(&bh));
        buf_dispose(&bl);
        buf_dispose(&bh);
        return NULL;
    }
    if (dim_eq(lo, dim_const(0)) && dim_eq(hi, size))
        return x;
    IrOp *op = ir_op_append(s->m, f->region, IR_OP_SLICE, &x, 1, 1, sl->span);
    op->attrs.axis = axis;
    op->attrs.start = lo;
    op->attrs.end = hi;
    const char *err = ir_infer(s->m, op);
    if (err) {
        diag_error(s->d, sl->span, "internal error: slice: %s (operand: %s)", err, type_str(s, x->dtype, &x->shape));
        ir_op_erase(op);
        return NULL;
    }
    return op->results[0];
}

static IrValue *index_one(Sema *s, Frame *f, IrValue *x, uint32_t axis, const AstNode *ie,
                          uint32_t *consumed)
{
    *consumed = 1;
    if (ie->kind == AST_SLICE)
        return index_slice(s, f, x, axis, ie);
    Value v = sema_expr(s, f, ie);
    if (v.kind == VK_NONE)
        return NULL;
    IrValue *idx = NULL;
    if (v.kind == VK_INT) {
        if (!dim_is_const(v.u.i)) {
            diag_error(s->d, ie->span, "an index must be a constant or an i32 tensor");
            return NULL;
        }
        int64_t i = v.u.i.c;
        Dim size = x->shape.dims[axis];
        if (i < 0 && dim_is_const(size))
            i += size.c;
        if (i < 0 || (dim_is_const(size) && i >= size.c)) {
            diag_error(s->d, ie->span, "index %lld is out of range for a dimension of size %lld",
                       (long long)v.u.i.c, (long long)size.c);
            return NULL;
        }
        Shape scalar = { 0 };
        idx = sema_emit_const(s, f, (double)i, DT_I32, &scalar, ie->span);
    } else if (v.kind == VK_TENSOR) {
        idx = v.u.t;
    } else {
        diag_error(s->d, ie->span, "an index must be an int, a slice or an i32 tensor, found %s",
                   value_str(s, &v));
        return NULL;
    }
    if (idx->dtype != DT_I32) {
        diag_error(s->d, ie->span, "an index tensor must be i32, found %s",
                   type_str(s, idx->dtype, &idx->shape));
        return NULL;
    }
    IrValue *ops[2] = { x, idx };
    IrOpKind k = idx->shape.rank == 0 ? IR_OP_INDEX : IR_OP_GATHER;
    IrOp *op = ir_op_append(s->m, f->region, k, ops, 2, 1, ie->span);
    op->attrs.axis = axis;
    const char *err = ir_infer(s->m, op);
    if (err) {
        diag_error(s->d, ie->span, "%s: %s", ir_op_info[k].name, err);
        ir_op_erase(op);
        return NULL;
    }
    *consumed = idx->shape.rank == 0 ? 0 : idx->shape.rank;
    return op->results[0];
}

static Value index_expr(Sema *s, Frame *f, const AstNode *e)
{
    Value bv = sema_expr(s, f, e->u.index.base);
    if (bv.kind == VK_NONE)
        return bv;
    if (bv.kind == VK_TUPLE || bv.kind == VK_LIST) {
        int64_t i;
        if (e->u.index.indices.n != 1 || !sema_const_int(s, f, e->u.index.indices.items[0], &i))
            return v_none();
        if (i < 0 || i >= bv.u.tuple.n) {
            diag_error(s->d, e->span, "index %lld is out of range for a %s of %u items",
                       (long long)i, vkind_name(bv.kind), bv.u.tuple.n);
            return v_none();
        }
        return bv.u.tuple.items[i];
    }
    if (bv.kind != VK_TENSOR) {
        diag_error(s->d, e->span, "cannot index a %s", vkind_name(bv.kind));
        return v_none();
    }
    IrValue *x = bv.u.t;
    const AstList *ix = &e->u.index.indices;
    if (ix->n > x->shape.rank) {
        diag_error(s->d, e->span, "%u indices for a tensor of rank %u (%s)", ix->n,
                   (unsigned)x->shape.rank, type_str(s, x->dtype, &x->shape));
        return v_none();
    }
    uint32_t axis = 0;
    for (uint32_t i = 0; i < ix->n && x; i++) {
        uint32_t consumed;
        x = index_one(s, f, x, axis, ix->items[i], &consumed);
        axis += consumed;
    }
    return x ? v_tensor(x) : v_none();
}

/* ---- calls ---- */

static Value call_expr(Sema *s, Frame *f, const AstNode *e)
{
    const char *name = e->u.call.callee;
    Binding *b = env_lookup(f->env, name);
    if (b && b->v.kind == VK_FN) {
        if (b->v.u.fn.block)
            return sema_block_call(s, f, e, b->v.u.fn.block);
        if (e->u.call.args.n != 1 || e->u.call.args.items[0]->u.arg.name) {
            diag_error(s->d, e->span, "'%s' (bound to '%s') takes one positional argument", name,
                       b->v.u.fn.builtin);
            return v_none();
        }
        Value x = sema_expr(s, f, e->u.call.args.items[0]->u.arg.value);
        return sema_apply_fn(s, f, b->v.u.fn.builtin, x, e->span);
    }
    if (b && b->v.kind != VK_NONE) {
        diag_error(s->d, e->u.call.callee_span, "'%s' is a %s, not a block or a function", name,
                   vkind_name(b->v.kind));
        return v_none();
    }
    Decl *d = sema_find_decl(s, name);
    if (d && d->node->kind == AST_BLOCK)
        return sema_block_call(s, f, e, d->node);
    if (sema_is_builtin(name)) {
        if (e->u.call.scope || e->u.call.renames.n) {
            diag_error(s->d, e->span, "'%s' is a primitive: it owns no weights, so it takes no scope or rename", name);
            return v_none();
        }
        return sema_builtin_call(s, f, e, name);
    }
    if (d) {
        diag_error(s->d, e->u.call.callee_span, "'%s' is a constant, not a block", name);
        return v_none();
    }
    diag_error(s->d, e->u.call.callee_span, "unknown block or function '%s'", name);
    return v_none();
}

static Value list_expr(Sema *s, Frame *f, const AstNode *e)
{
    Value v = { .kind = VK_LIST };
    v.u.tuple.n = e->u.list.items.n;
    v.u.tuple.items = ARENA_ARRAY(s->a, Value, v.u.tuple.n);
    for (uint32_t i = 0; i < v.u.tuple.n; i++) {
        v.u.tuple.items[i] = sema_expr(s, f, e->u.list.items.items[i]);
        if (v.u.tuple.items[i].kind == VK_NONE)
            return v_none();
    }
    return v;
}

static Value transpose_expr(Sema *s, Frame *f, const AstNode *e)
{
    Value v = sema_expr(s, f, e->u.transpose.operand);
    if (v.kind == VK_NONE)
        return v;
    if (v.kind != VK_TENSOR || v.u.t->shape.rank < 2) {
        diag_error(s->d, e->span, "'^T' needs a tensor of rank 2 or more, found %s", value_str(s, &v));
        return v_none();
    }
    IrValue *x = v.u.t;
    IrOp *op = ir_op_append(s->m, f->region, IR_OP_TRANSPOSE, &x, 1, 1, e->span);
    uint8_t r = x->shape.rank;
    for (uint8_t i = 0; i < r; i++)
        op->attrs.perm[i] = i;
    op->attrs.perm[r - 2] = (uint8_t)(r - 1);
    op->attrs.perm[r - 1] = (uint8_t)(r - 2);
    ir_infer(s->m, op);
    return v_tensor(op->results[0]);
}

Value sema_expr(Sema *s, Frame *f, const AstNode *e)
{
    switch (e->kind) {
    case AST_INT: return v_int(e->u.ival.value);
    case AST_FLOAT: return v_float(e->u.fval.value);
    case AST_BOOL: return (Value){ .kind = VK_BOOL, .u.b = e->u.bval.value };
    case AST_STRING: return (Value){ .kind = VK_STR, .u.s = e->u.sval.value };
    case AST_NAME: return name_value(s, f, e);
    case AST_LIST: return list_expr(s, f, e);
    case AST_BINARY: {
        Value a = sema_expr(s, f, e->u.binary.lhs);
        Value b = sema_expr(s, f, e->u.binary.rhs);
        return sema_binary(s, f, e->u.binary.op, a, b, e->span);
    }
    case AST_UNARY: return unary_minus(s, f, sema_expr(s, f, e->u.unary.operand), e->span);
    case AST_TRANSPOSE: return transpose_expr(s, f, e);
    case AST_CALL: return call_expr(s, f, e);
    case AST_INDEX: return index_expr(s, f, e);
    case AST_SLICE:
        diag_error(s->d, e->span, "internal error: a slice outside '[ ]'");
        return v_none();
    default:
        diag_error(s->d, e->span, "internal error: unexpected %s node in an expression", ast_kind_name(e->kind));
        return v_none();
    }
}

bool sema_int_dim(Sema *s, Frame *f, const AstNode *e, Dim *out)
{
    Value v = sema_expr(s, f, e);
    if (v.kind == VK_NONE)
        return false;
    if (v.kind != VK_INT) {
        diag_error(s->d, e->span, "expected an int, found %s", value_str(s, &v));
        return false;
    }
    *out = v.u.i;
    return true;
}

bool sema_const_int(Sema *s, Frame *f, const AstNode *e, int64_t *out)
{
    Dim d;
    if (!sema_int_dim(s, f, e, &d))
        return false;
    if (!dim_is_const(d)) {
        diag_error(s->d, e->span, "expected a compile-time constant, but this depends on a run-time dimension");
        return false;
    }
    *out = d.c;
    return true;
}

bool sema_shape(Sema *s, Frame *f, const AstNode *ttype, Shape *out)
{
    const AstList *dims = &ttype->u.ttype.dims;
    if (dims->n > IR_MAX_RANK) {
        diag_error(s->d, ttype->span, "tensors have at most %d dimensions, this type has %u",
                   IR_MAX_RANK, dims->n);
        return false;
    }
    out->rank = (uint8_t)dims->n;
    for (uint32_t i = 0; i < dims->n; i++) {
        if (!sema_int_dim(s, f, dims->items[i], &out->dims[i]))
            return false;
        Dim d = out->dims[i];
        if (dim_is_const(d) && d.c < 0) {
            diag_error(s->d, dims->items[i]->span, "a dimension must not be negative (it is %lld)",
                       (long long)d.c);
            return false;
        }
    }
    return true;
}
