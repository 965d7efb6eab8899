/* ast.c - constructors for AST nodes, node lists and the name tables of ast.h.
 * Every node is allocated from the compile session's arena; the grammar actions in
 * grammar/tfx.y call exactly one of these per reduction. Each constructor also records
 * the height of the subtree it builds (AstNode.height), which the parser uses to keep
 * expressions, and so every later recursive walk, at a bounded depth. */
#include "ast.h"

#include <string.h>

/* ---- lists ---- */

void ast_list_push(Arena *a, AstList *l, AstNode *n)
{
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        l->items = arena_grow(a, l->items, sizeof(AstNode *) * l->n, sizeof(AstNode *) * cap);
        l->cap = cap;
    }
    l->items[l->n++] = n;
}

AstList ast_list_one(Arena *a, AstNode *n)
{
    AstList l = { 0 };
    ast_list_push(a, &l, n);
    return l;
}

AstList ast_list_add(Arena *a, AstList l, AstNode *n)
{
    ast_list_push(a, &l, n);
    return l;
}

/* ---- heights ---- */

static uint32_t height_of(const AstNode *n)
{
    return n ? n->height : 0;
}

static uint32_t max2(uint32_t x, uint32_t y)
{
    return x > y ? x : y;
}

static uint32_t list_height(AstList l)
{
    uint32_t h = 0;
    for (uint32_t i = 0; i < l.n; i++)
        h = max2(h, height_of(l.items[i]));
    return h;
}

/* Sets n's height to one more than its tallest child and returns n. */
static AstNode *with_children(AstNode *n, uint32_t tallest_child)
{
    n->height = tallest_child + 1;
    return n;
}

AstNode *ast_new(Arena *a, AstKind kind, SrcSpan span)
{
    AstNode *n = ARENA_NEW(a, AstNode);
    n->kind = kind;
    n->span = span;
    n->height = 1;
    return n;
}

/* ---- declarations ---- */

AstNode *ast_file(Arena *a, SrcSpan s)
{
    return ast_new(a, AST_FILE, s);
}

void ast_file_add(Arena *a, AstNode *file, AstNode *decl)
{
    ast_list_push(a, &file->u.file.decls, decl);
    file->height = max2(file->height, height_of(decl) + 1);
}

void ast_file_add_all(Arena *a, AstNode *file, AstList decls)
{
    for (uint32_t i = 0; i < decls.n; i++)
        ast_file_add(a, file, decls.items[i]);
}

const char *ast_path_join(Arena *a, const char *prefix, const char *name)
{
    return arena_printf(a, "%s.%s", prefix, name);
}

AstNode *ast_use(Arena *a, const char *path, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_USE, s);
    n->u.use.path = path;
    return n;
}

AstNode *ast_const(Arena *a, const char *name, AstNode *value, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_CONST, s);
    n->u.cdecl.name = name;
    n->u.cdecl.value = value;
    return with_children(n, height_of(value));
}

AstNode *ast_block(Arena *a, const char *name, AstList params, AstNode *ret, AstList body,
                   SrcSpan s)
{
    AstNode *n = ast_new(a, AST_BLOCK, s);
    n->u.block.name = name;
    n->u.block.params = params;
    n->u.block.ret = ret;
    n->u.block.body = body;
    return with_children(n, max2(max2(list_height(params), height_of(ret)), list_height(body)));
}

AstNode *ast_model(Arena *a, const char *name, AstList hparams, AstList body, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_MODEL, s);
    n->u.model.name = name;
    n->u.model.hparams = hparams;
    n->u.model.body = body;
    return with_children(n, max2(list_height(hparams), list_height(body)));
}

AstNode *ast_hparam(Arena *a, const char *name, AstNode *value, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_HPARAM, s);
    n->u.hparam.name = name;
    n->u.hparam.value = value;
    return with_children(n, height_of(value));
}

AstNode *ast_param_def(Arena *a, const char *name, AstNode *type, AstNode *dflt, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_PARAM_DEF, s);
    n->u.pdef.name = name;
    n->u.pdef.type = type;
    n->u.pdef.dflt = dflt;
    return with_children(n, max2(height_of(type), height_of(dflt)));
}

AstNode *ast_tensor_type(Arena *a, AstDType dtype, AstList dims, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_TENSOR_TYPE, s);
    n->u.ttype.dtype = dtype;
    n->u.ttype.dims = dims;
    return with_children(n, list_height(dims));
}

AstNode *ast_scalar_type(Arena *a, AstScalarKind sk, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_SCALAR_TYPE, s);
    n->u.stype.sk = sk;
    return n;
}

/* ---- statements ---- */

AstNode *ast_param(Arena *a, AstList names, AstNode *type, AstNode *init, const char *key,
                   SrcSpan s)
{
    AstNode *n = ast_new(a, AST_PARAM, s);
    n->u.param.names = names;
    n->u.param.type = type;
    n->u.param.init = init;
    n->u.param.key = key;
    return with_children(n, max2(height_of(type), height_of(init)));
}

AstNode *ast_input(Arena *a, const char *name, AstNode *type, AstList bounds, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_INPUT, s);
    n->u.input.name = name;
    n->u.input.type = type;
    n->u.input.bounds = bounds;
    return with_children(n, max2(height_of(type), list_height(bounds)));
}

AstNode *ast_output(Arena *a, const char *name, AstNode *value, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_OUTPUT, s);
    n->u.output.name = name;
    n->u.output.value = value;
    return with_children(n, height_of(value));
}

AstNode *ast_assign(Arena *a, AstList targets, AstNode *value, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_ASSIGN, s);
    n->u.assign.targets = targets;
    n->u.assign.value = value;
    return with_children(n, max2(list_height(targets), height_of(value)));
}

AstNode *ast_return(Arena *a, AstNode *value, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_RETURN, s);
    n->u.ret.value = value;
    return with_children(n, height_of(value));
}

AstNode *ast_for(Arena *a, const char *var, AstNode *lo, AstNode *hi, const char *scope,
                 AstList body, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_FOR, s);
    n->u.forl.var = var;
    n->u.forl.lo = lo;
    n->u.forl.hi = hi;
    n->u.forl.scope = scope;
    n->u.forl.body = body;
    return with_children(n, max2(max2(height_of(lo), height_of(hi)), list_height(body)));
}

AstNode *ast_repeat(Arena *a, AstNode *count, const char *var, AstNode *until, AstList body,
                    SrcSpan s)
{
    AstNode *n = ast_new(a, AST_REPEAT, s);
    n->u.repeat.count = count;
    n->u.repeat.var = var;
    n->u.repeat.until = until;
    n->u.repeat.body = body;
    return with_children(n, max2(max2(height_of(count), height_of(until)), list_height(body)));
}

AstNode *ast_if(Arena *a, AstNode *cond, AstList then_body, AstList else_body, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_IF, s);
    n->u.ifs.cond = cond;
    n->u.ifs.then_body = then_body;
    n->u.ifs.else_body = else_body;
    return with_children(n, max2(height_of(cond), max2(list_height(then_body),
                                                        list_height(else_body))));
}

/* ---- expressions ---- */

AstNode *ast_int(Arena *a, int64_t v, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_INT, s);
    n->u.ival.value = v;
    return n;
}

AstNode *ast_float(Arena *a, double v, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_FLOAT, s);
    n->u.fval.value = v;
    return n;
}

AstNode *ast_bool(Arena *a, bool v, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_BOOL, s);
    n->u.bval.value = v;
    return n;
}

AstNode *ast_string(Arena *a, const char *v, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_STRING, s);
    n->u.sval.value = v;
    return n;
}

AstNode *ast_name(Arena *a, const char *name, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_NAME, s);
    n->u.name.name = name;
    return n;
}

AstNode *ast_list_literal(Arena *a, AstList items, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_LIST, s);
    n->u.list.items = items;
    return with_children(n, list_height(items));
}

AstNode *ast_binary(Arena *a, AstOp op, AstNode *lhs, AstNode *rhs, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_BINARY, s);
    n->u.binary.op = op;
    n->u.binary.lhs = lhs;
    n->u.binary.rhs = rhs;
    return with_children(n, max2(height_of(lhs), height_of(rhs)));
}

AstNode *ast_unary(Arena *a, AstOp op, AstNode *operand, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_UNARY, s);
    n->u.unary.op = op;
    n->u.unary.operand = operand;
    return with_children(n, height_of(operand));
}

AstNode *ast_transpose(Arena *a, AstNode *operand, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_TRANSPOSE, s);
    n->u.transpose.operand = operand;
    return with_children(n, height_of(operand));
}

AstNode *ast_index(Arena *a, AstNode *base, AstList indices, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_INDEX, s);
    n->u.index.base = base;
    n->u.index.indices = indices;
    return with_children(n, max2(height_of(base), list_height(indices)));
}

AstNode *ast_slice(Arena *a, AstNode *lo, AstNode *hi, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_SLICE, s);
    n->u.slice.lo = lo;
    n->u.slice.hi = hi;
    return with_children(n, max2(height_of(lo), height_of(hi)));
}

AstNode *ast_arg(Arena *a, const char *name, AstNode *value, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_ARG, s);
    n->u.arg.name = name;
    n->u.arg.value = value;
    return with_children(n, height_of(value));
}

AstNode *ast_rename(Arena *a, const char *from, const char *to, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_RENAME, s);
    n->u.rename.from = from;
    n->u.rename.to = to;
    return n;
}

AstExpert ast_expert(Arena *a, AstNode *var1, AstNode *var2, AstList body)
{
    AstExpert e = { .body = body, .present = true };
    ast_list_push(a, &e.vars, var1);
    ast_list_push(a, &e.vars, var2);
    return e;
}

AstExpert ast_expert_none(void)
{
    return (AstExpert){ .present = false };
}

AstNode *ast_call(Arena *a, const char *callee, SrcSpan callee_span, AstList args,
                  const char *scope, AstList renames, AstExpert expert, SrcSpan s)
{
    AstNode *n = ast_new(a, AST_CALL, s);
    n->u.call.callee = callee;
    n->u.call.callee_span = callee_span;
    n->u.call.args = args;
    n->u.call.scope = scope;
    n->u.call.renames = renames;
    n->u.call.expert_vars = expert.vars;
    n->u.call.expert_body = expert.body;
    n->u.call.has_expert = expert.present;
    uint32_t h = max2(list_height(args), list_height(renames));
    h = max2(h, max2(list_height(expert.vars), list_height(expert.body)));
    return with_children(n, h);
}

/* ---- name tables ---- */

static const char *const kind_names[AST_COUNT_] = {
#define X(kind, text, member) [AST_##kind] = text,
#include "ast_kinds.def"
#undef X
};

const char *ast_kind_name(AstKind k)
{
    return (unsigned)k < AST_COUNT_ ? kind_names[k] : "?";
}

const char *ast_op_text(AstOp op)
{
    static const char *const text[AST_OP_COUNT_] = {
        [AST_OP_ADD] = "+",  [AST_OP_SUB] = "-",  [AST_OP_MUL] = "*",   [AST_OP_DIV] = "/",
        [AST_OP_MOD] = "%",  [AST_OP_MATMUL] = "@", [AST_OP_POW] = "**", [AST_OP_LT] = "<",
        [AST_OP_LE] = "<=",  [AST_OP_GT] = ">",  [AST_OP_GE] = ">=",   [AST_OP_EQ] = "==",
        [AST_OP_NE] = "!=",  [AST_OP_NEG] = "-",
    };
    return (unsigned)op < AST_OP_COUNT_ ? text[op] : "?";
}

const char *ast_dtype_name(AstDType t)
{
    static const char *const text[AST_DT_COUNT_] = {
        [AST_DT_F32] = "f32", [AST_DT_F16] = "f16", [AST_DT_BF16] = "bf16", [AST_DT_I32] = "i32",
    };
    return (unsigned)t < AST_DT_COUNT_ ? text[t] : "?";
}

static const char *const scalar_kind_names[AST_SK_COUNT_] = {
    [AST_SK_INT] = "int", [AST_SK_FLOAT] = "float", [AST_SK_BOOL] = "bool",
    [AST_SK_MASK] = "mask", [AST_SK_FN] = "fn", [AST_SK_STR] = "str",
};

const char *ast_scalar_kind_name(AstScalarKind k)
{
    return (unsigned)k < AST_SK_COUNT_ ? scalar_kind_names[k] : "?";
}

bool ast_scalar_kind_from_name(const char *name, AstScalarKind *out)
{
    for (int k = 0; k < AST_SK_COUNT_; k++) {
        if (strcmp(name, scalar_kind_names[k]) == 0) {
            *out = (AstScalarKind)k;
            return true;
        }
    }
    return false;
}
