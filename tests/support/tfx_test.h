/* tfx_test.h - helpers shared by the Criterion tests: compile a string or file
 * in-process, read files, compare against golden files (TFX_UPDATE_GOLDEN=1 rewrites
 * them), list a directory for parameterized tests. */
#ifndef TFX_TESTS_SUPPORT_H
#define TFX_TESTS_SUPPORT_H

#include <stddef.h>

#include "compile.h"

/* Reads a whole file into a malloc'd NUL-terminated string, or NULL. */
char *tt_slurp(const char *path, size_t *len);
/* Compares actual with the golden file at path (first differing line is logged), or
 * rewrites it when TFX_UPDATE_GOLDEN is set. */
void  tt_golden_check(const char *actual, const char *path);
/* Compiles `text` (named `name` in messages) with the given emit kind; diagnostics are
 * collected in r->diags. Uses the source tree's stdlib. */
void  tt_compile_string(const char *name, const char *text, TfxEmit emit, CompileResult *r);
/* Compiles a file path (relative to the source tree root) with the given emit kind. */
void  tt_compile_file(const char *relpath, TfxEmit emit, const char *dump_after, CompileResult *r);
/* Lists files in dir (relative to the source root) ending in suffix, sorted; returns the
 * count and a cr_malloc'd array of cr_malloc'd strings (names without the directory). */
size_t tt_list_dir(const char *reldir, const char *suffix, char ***names);
/* Counts the files in dir (relative to the source root) ending in suffix. */
size_t tt_count_dir(const char *reldir, const char *suffix);
/* Joins the source root and a relative path into a malloc'd string. */
char *tt_src_path(const char *rel);

#endif
