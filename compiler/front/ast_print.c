/* ast_print.c - the textual AST dump behind `tfxc --emit=ast` and the parser tests.
 * One node per line: `(kind@line:col scalars`, its children on the following lines
 * indented two more spaces, and the closing `)` at the end of the node's last line.
 * The format is specified in docs/language.md ("AST dump format"); keep them in step.
 * Output depends only on the tree, so it is byte-identical everywhere. */
#include "ast.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- literal formats ---- */

/* Writes the significant digits `digits` (no point) scaled by 10^exp positionally:
 * ("15", 3) -> 1500.0, ("25", -1) -> 0.25; always with a point and a digit after it. */
static void put_positional(Buf *out, const char *digits, int exp)
{
    int ndig = (int)strlen(digits);
    if (exp < 0) {
        buf_puts(out, "0.");
        for (int i = 0; i < -exp - 1; i++)
            buf_putc(out, '0');
        buf_puts(out, digits);
        return;
    }
    for (int i = 0; i <= exp; i++)
        buf_putc(out, i < ndig ? digits[i] : '0');
    buf_putc(out, '.');
    buf_puts(out, ndig > exp + 1 ? digits + exp + 1 : "0");
}

void ast_format_float(Buf *out, double v)
{
    if (!isfinite(v)) {
        buf_puts(out, isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
        return;
    }
    char text[64];
    // The fewest significant digits that read back to the same double, as d.ddde±XX.
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(text, sizeof text, "%.*e", prec - 1, v);
        if (strtod(text, NULL) == v)
            break;
    }
    char *e = strchr(text, 'e');
    int exp = (int)strtol(e + 1, NULL, 10);
    if (exp < -4 || exp >= 16) {
        // Exponent form, without a useless ".0": 1e-05, 2.5e+20.
        buf_puts(out, text);
        return;
    }
    char digits[32];
    size_t nd = 0;
    for (const char *p = text; p < e; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    if (v < 0)
        buf_putc(out, '-');
    put_positional(out, digits, exp);
}

void ast_format_string(Buf *out, const char *s)
{
    buf_putc(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': buf_puts(out, "\\\""); break;
        case '\\': buf_puts(out, "\\\\"); break;
        case '\n': buf_puts(out, "\\n"); break;
        case '\t': buf_puts(out, "\\t"); break;
        default:
            if (*p < 0x20 || *p >= 0x7f)
                buf_printf(out, "\\x%02x", *p);
            else
                buf_putc(out, (char)*p);
        }
    }
    buf_putc(out, '"');
}

/* ---- the tree ---- */

static void print_node(Buf *out, const AstNode *n, int indent);

static void print_child(Buf *out, const AstNode *child, int indent)
{
    if (!child)
        return;
    buf_putc(out, '\n');
    print_node(out, child, indent);
}

static void print_list(Buf *out, AstList l, int indent)
{
    for (uint32_t i = 0; i < l.n; i++)
        print_child(out, l.items[i], indent);
}

/* ` "text"` for an optional string field, preceded by its keyword; nothing when NULL. */
static void print_opt_string(Buf *out, const char *keyword, const char *s)
{
    if (!s)
        return;
    buf_printf(out, " %s ", keyword);
    ast_format_string(out, s);
}

/* Writes the scalar fields that follow `kind@line:col` on the node's own line. */
static void print_scalars(Buf *out, const AstNode *n)
{
    switch (n->kind) {
    case AST_USE: buf_printf(out, " %s", n->u.use.path); break;
    case AST_CONST: buf_printf(out, " %s", n->u.cdecl.name); break;
    case AST_BLOCK: buf_printf(out, " %s", n->u.block.name); break;
    case AST_MODEL: buf_printf(out, " %s", n->u.model.name); break;
    case AST_HPARAM: buf_printf(out, " %s", n->u.hparam.name); break;
    case AST_PARAM_DEF: buf_printf(out, " %s", n->u.pdef.name); break;
    case AST_TENSOR_TYPE: buf_printf(out, " %s", ast_dtype_name(n->u.ttype.dtype)); break;
    case AST_SCALAR_TYPE: buf_printf(out, " %s", ast_scalar_kind_name(n->u.stype.sk)); break;
    case AST_PARAM: print_opt_string(out, "as", n->u.param.key); break;
    case AST_INPUT: buf_printf(out, " %s", n->u.input.name); break;
    case AST_OUTPUT: buf_printf(out, " %s", n->u.output.name); break;
    case AST_FOR:
        buf_printf(out, " %s", n->u.forl.var);
        print_opt_string(out, "scope", n->u.forl.scope);
        break;
    case AST_REPEAT:
        if (n->u.repeat.var)
            buf_printf(out, " as %s", n->u.repeat.var);
        if (n->u.repeat.until)
            buf_puts(out, " until");
        break;
    case AST_INT: buf_printf(out, " %" PRId64, n->u.ival.value); break;
    case AST_FLOAT:
        buf_putc(out, ' ');
        ast_format_float(out, n->u.fval.value);
        break;
    case AST_BOOL: buf_puts(out, n->u.bval.value ? " true" : " false"); break;
    case AST_STRING:
        buf_putc(out, ' ');
        ast_format_string(out, n->u.sval.value);
        break;
    case AST_NAME: buf_printf(out, " %s", n->u.name.name); break;
    case AST_BINARY: buf_printf(out, " %s", ast_op_text(n->u.binary.op)); break;
    case AST_UNARY: buf_printf(out, " %s", ast_op_text(n->u.unary.op)); break;
    case AST_CALL:
        buf_printf(out, " %s", n->u.call.callee);
        print_opt_string(out, "scope", n->u.call.scope);
        if (n->u.call.has_expert)
            buf_puts(out, " expert");
        break;
    case AST_ARG:
        if (n->u.arg.name)
            buf_printf(out, " %s", n->u.arg.name);
        break;
    case AST_RENAME:
        buf_putc(out, ' ');
        ast_format_string(out, n->u.rename.from);
        buf_putc(out, ' ');
        ast_format_string(out, n->u.rename.to);
        break;
    case AST_SLICE:
        if (n->u.slice.lo)
            buf_puts(out, " lo");
        if (n->u.slice.hi)
            buf_puts(out, " hi");
        break;
    default: break;
    }
}

/* The else branch of an `if`: the line `else` at the children's indentation, then its
 * statements (nothing at all when there is no else). */
static void print_else(Buf *out, AstList l, int indent)
{
    if (l.n == 0)
        return;
    buf_printf(out, "\n%*selse", indent, "");
    print_list(out, l, indent);
}

/* Writes the children of n, in the order docs/language.md lists them. */
static void print_children(Buf *out, const AstNode *n, int indent)
{
    switch (n->kind) {
    case AST_FILE: print_list(out, n->u.file.decls, indent); break;
    case AST_CONST: print_child(out, n->u.cdecl.value, indent); break;
    case AST_BLOCK:
        print_list(out, n->u.block.params, indent);
        print_child(out, n->u.block.ret, indent);
        print_list(out, n->u.block.body, indent);
        break;
    case AST_MODEL:
        print_list(out, n->u.model.hparams, indent);
        print_list(out, n->u.model.body, indent);
        break;
    case AST_HPARAM: print_child(out, n->u.hparam.value, indent); break;
    case AST_PARAM_DEF:
        print_child(out, n->u.pdef.type, indent);
        print_child(out, n->u.pdef.dflt, indent);
        break;
    case AST_TENSOR_TYPE: print_list(out, n->u.ttype.dims, indent); break;
    case AST_PARAM:
        print_list(out, n->u.param.names, indent);
        print_child(out, n->u.param.type, indent);
        print_child(out, n->u.param.init, indent);
        break;
    case AST_INPUT:
        print_child(out, n->u.input.type, indent);
        print_list(out, n->u.input.bounds, indent);
        break;
    case AST_OUTPUT: print_child(out, n->u.output.value, indent); break;
    case AST_ASSIGN:
        print_list(out, n->u.assign.targets, indent);
        print_child(out, n->u.assign.value, indent);
        break;
    case AST_RETURN: print_child(out, n->u.ret.value, indent); break;
    case AST_FOR:
        print_child(out, n->u.forl.lo, indent);
        print_child(out, n->u.forl.hi, indent);
        print_list(out, n->u.forl.body, indent);
        break;
    case AST_REPEAT:
        print_child(out, n->u.repeat.count, indent);
        print_child(out, n->u.repeat.until, indent);
        print_list(out, n->u.repeat.body, indent);
        break;
    case AST_IF:
        print_child(out, n->u.ifs.cond, indent);
        print_list(out, n->u.ifs.then_body, indent);
        print_else(out, n->u.ifs.else_body, indent);
        break;
    default: break;
    }
}

/* Children of expression nodes (split from print_children to keep both switches short). */
static void print_expr_children(Buf *out, const AstNode *n, int indent)
{
    switch (n->kind) {
    case AST_LIST: print_list(out, n->u.list.items, indent); break;
    case AST_BINARY:
        print_child(out, n->u.binary.lhs, indent);
        print_child(out, n->u.binary.rhs, indent);
        break;
    case AST_UNARY: print_child(out, n->u.unary.operand, indent); break;
    case AST_TRANSPOSE: print_child(out, n->u.transpose.operand, indent); break;
    case AST_CALL:
        print_list(out, n->u.call.args, indent);
        print_list(out, n->u.call.renames, indent);
        print_list(out, n->u.call.expert_vars, indent);
        print_list(out, n->u.call.expert_body, indent);
        break;
    case AST_ARG: print_child(out, n->u.arg.value, indent); break;
    case AST_INDEX:
        print_child(out, n->u.index.base, indent);
        print_list(out, n->u.index.indices, indent);
        break;
    case AST_SLICE:
        print_child(out, n->u.slice.lo, indent);
        print_child(out, n->u.slice.hi, indent);
        break;
    default: break;
    }
}

static void print_node(Buf *out, const AstNode *n, int indent)
{
    buf_printf(out, "%*s(%s@%u:%u", indent, "", ast_kind_name(n->kind), (unsigned)n->span.line,
               (unsigned)n->span.col);
    print_scalars(out, n);
    print_children(out, n, indent + 2);
    print_expr_children(out, n, indent + 2);
    buf_putc(out, ')');
}

void ast_print(Buf *out, const AstNode *file)
{
    if (!file)
        return;
    print_node(out, file, 0);
    buf_putc(out, '\n');
}
