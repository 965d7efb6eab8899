/* rt_safetensors.c - map a safetensors file and validate all of it before anything uses
 * it. Layout: 8-byte little-endian header length N, N bytes of JSON (an object mapping
 * tensor names to {dtype, shape, data_offsets}, plus an optional "__metadata__" object of
 * strings), then the data section that data_offsets index. */
#include "rt_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { const char *name; size_t size; } dtype_table[RT_ST_DTYPE_COUNT_] = {
    [RT_ST_BOOL] = { "BOOL", 1 },       [RT_ST_U8] = { "U8", 1 },
    [RT_ST_I8] = { "I8", 1 },           [RT_ST_F8_E4M3] = { "F8_E4M3", 1 },
    [RT_ST_F8_E5M2] = { "F8_E5M2", 1 }, [RT_ST_I16] = { "I16", 2 },
    [RT_ST_U16] = { "U16", 2 },         [RT_ST_F16] = { "F16", 2 },
    [RT_ST_BF16] = { "BF16", 2 },       [RT_ST_I32] = { "I32", 4 },
    [RT_ST_U32] = { "U32", 4 },         [RT_ST_F32] = { "F32", 4 },
    [RT_ST_I64] = { "I64", 8 },         [RT_ST_U64] = { "U64", 8 },
    [RT_ST_F64] = { "F64", 8 },
};

const char *rt_st_dtype_name(RtStDtype d)
{
    return dtype_table[d].name;
}

size_t rt_st_dtype_size(RtStDtype d)
{
    return dtype_table[d].size;
}

/* ---- mapping ---- */

/* Opens and maps path read-only into f->map / f->size. Files under 8 bytes are not
 * mapped (they are truncated whatever they hold). */
static int map_file(RtStFile *f, tfx_error *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rt_fail(err, TFX_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rt_fail(err, TFX_ERR_IO, "%s: cannot stat: %s", f->path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rt_fail(err, TFX_ERR_IO, "%s: not a regular file", f->path);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return rt_fail(err, TFX_ERR_TRUNCATED,
                       "%s: file is %zu bytes, shorter than the 8-byte header length",
                       f->path, f->size);
    }
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return rt_fail(err, TFX_ERR_IO, "%s: cannot map: %s", f->path, strerror(e));
    f->map = p;
    return TFX_OK;
}

static uint64_t read_le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* ---- the header's structure ---- */

static int check_metadata(const RtStFile *f, const RtJson *v, tfx_error *err)
{
    if (v->kind != RT_JSON_OBJECT)
        return rt_fail(err, TFX_ERR_HEADER, "%s: '__metadata__' must be an object, found %s",
                       f->path, rt_json_kind_name(v->kind));
    for (const RtJson *m = v->first; m; m = m->next)
        if (m->kind != RT_JSON_STRING)
            return rt_fail(err, TFX_ERR_HEADER,
                           "%s: '__metadata__' entry '%s' must be a string, found %s",
                           f->path, m->key, rt_json_kind_name(m->kind));
    return TFX_OK;
}

static int parse_dtype(const RtStFile *f, RtStTensor *t, const RtJson *v, tfx_error *err)
{
    if (v->kind != RT_JSON_STRING)
        return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': 'dtype' must be a string, found %s",
                       f->path, t->name, rt_json_kind_name(v->kind));
    for (int d = 0; d < RT_ST_DTYPE_COUNT_; d++) {
        if (strcmp(v->str, dtype_table[d].name) == 0) {
            t->dtype = (RtStDtype)d;
            return TFX_OK;
        }
    }
    return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': unknown dtype '%s'", f->path, t->name,
                   v->str);
}

/* Reads an array of non-negative integers (at most cap of them) into out. */
static int parse_uint_array(const RtStFile *f, const RtStTensor *t, const char *field,
                            const RtJson *v, size_t cap, int64_t *out, tfx_error *err)
{
    if (v->kind != RT_JSON_ARRAY)
        return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': '%s' must be an array, found %s",
                       f->path, t->name, field, rt_json_kind_name(v->kind));
    if (v->count > cap)
        return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': '%s' has %zu entries, at most %zu "
                       "allowed", f->path, t->name, field, v->count, cap);
    size_t i = 0;
    for (const RtJson *e = v->first; e; e = e->next, i++) {
        if (e->kind != RT_JSON_NUMBER || !e->is_uint)
            return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': '%s' entry %zu must be a "
                           "non-negative integer", f->path, t->name, field, i);
        out[i] = e->uint;
    }
    return TFX_OK;
}

static int parse_offsets(const RtStFile *f, RtStTensor *t, const RtJson *v, tfx_error *err)
{
    int64_t off[2];
    int rc = parse_uint_array(f, t, "data_offsets", v, 2, off, err);
    if (rc == TFX_OK && v->count != 2)
        rc = rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': 'data_offsets' must have 2 entries, "
                     "found %zu", f->path, t->name, v->count);
    if (rc == TFX_OK) {
        t->begin = (uint64_t)off[0];
        t->end = (uint64_t)off[1];
    }
    return rc;
}

/* One "name": {"dtype": ..., "shape": [...], "data_offsets": [b, e]} entry. */
static int parse_tensor(const RtStFile *f, RtStTensor *t, const RtJson *v, tfx_error *err)
{
    t->name = v->key;
    if (v->kind != RT_JSON_OBJECT)
        return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': expected an object, found %s",
                       f->path, t->name, rt_json_kind_name(v->kind));
    static const char *const fields[3] = { "dtype", "shape", "data_offsets" };
    const RtJson *seen[3] = { NULL, NULL, NULL };
    for (const RtJson *m = v->first; m; m = m->next) {
        int k = 0;
        while (k < 3 && strcmp(m->key, fields[k]) != 0)
            k++;
        if (k == 3)
            return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': unknown field '%s'", f->path,
                           t->name, m->key);
        if (seen[k])
            return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': duplicate field '%s'", f->path,
                           t->name, m->key);
        seen[k] = m;
    }
    for (int k = 0; k < 3; k++)
        if (!seen[k])
            return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': missing field '%s'", f->path,
                           t->name, fields[k]);
    int rc = parse_dtype(f, t, seen[0], err);
    if (rc == TFX_OK)
        rc = parse_uint_array(f, t, "shape", seen[1], RT_ST_MAX_RANK, t->shape, err);
    t->rank = (int)seen[1]->count;
    if (rc == TFX_OK)
        rc = parse_offsets(f, t, seen[2], err);
    return rc;
}

static int parse_header(RtStFile *f, const RtAlloc *a, tfx_error *err)
{
    const RtJson *h = f->header;
    if (h->kind != RT_JSON_OBJECT)
        return rt_fail(err, TFX_ERR_HEADER, "%s: header must be a JSON object, found %s",
                       f->path, rt_json_kind_name(h->kind));
    f->tensors = rt_alloc_array(a, h->count, sizeof *f->tensors);
    f->by_name = rt_alloc_array(a, h->count, sizeof *f->by_name);
    if (!f->tensors || !f->by_name)
        return rt_fail(err, TFX_ERR_NOMEM, "%s: out of memory for %zu header entries", f->path,
                       h->count);
    for (const RtJson *v = h->first; v; v = v->next) {
        int rc = strcmp(v->key, "__metadata__") == 0
                     ? check_metadata(f, v, err)
                     : parse_tensor(f, &f->tensors[f->ntensors++], v, err);
        if (rc != TFX_OK)
            return rc;
    }
    return TFX_OK;
}

/* ---- names and data layout ---- */

static int cmp_by_name(const void *x, const void *y)
{
    return strcmp((*(RtStTensor *const *)x)->name, (*(RtStTensor *const *)y)->name);
}

static int cmp_by_begin(const void *x, const void *y)
{
    const RtStTensor *a = *(RtStTensor *const *)x, *b = *(RtStTensor *const *)y;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    return a->end < b->end ? -1 : a->end > b->end;
}

static int sort_names(RtStFile *f, tfx_error *err)
{
    for (size_t i = 0; i < f->ntensors; i++)
        f->by_name[i] = &f->tensors[i];
    if (f->ntensors > 1)
        qsort(f->by_name, f->ntensors, sizeof *f->by_name, cmp_by_name);
    for (size_t i = 1; i < f->ntensors; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return rt_fail(err, TFX_ERR_HEADER, "%s: duplicate tensor name '%s'", f->path,
                           f->by_name[i]->name);
    return TFX_OK;
}

/* Checks that data_offsets are in order and hold exactly dtype * shape bytes. */
static int check_sizes(const RtStFile *f, const RtStTensor *t, tfx_error *err)
{
    char shape[256];
    rt_format_shape(shape, sizeof shape, t->rank, t->shape);
    if (t->begin > t->end)
        return rt_fail(err, TFX_ERR_OFFSETS, "%s: tensor '%s': data_offsets [%llu, %llu] are "
                       "reversed", f->path, t->name, (unsigned long long)t->begin,
                       (unsigned long long)t->end);
    uint64_t n = rt_st_dtype_size(t->dtype);
    int overflow = 0;
    for (int i = 0; i < t->rank; i++)
        overflow |= __builtin_mul_overflow(n, (uint64_t)t->shape[i], &n);
    if (overflow)
        return rt_fail(err, TFX_ERR_HEADER, "%s: tensor '%s': shape %s is too large", f->path,
                       t->name, shape);
    if (t->end - t->begin != n)
        return rt_fail(err, TFX_ERR_OFFSETS, "%s: tensor '%s': data_offsets [%llu, %llu] hold "
                       "%llu bytes, but %s %s needs %llu", f->path, t->name,
                       (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin), rt_st_dtype_name(t->dtype),
                       shape, (unsigned long long)n);
    return TFX_OK;
}

/* With tensors sorted by begin: no two non-empty ranges overlap, and every range lies in
 * the data section. A well-formed layout (ranges packed from byte 0 without gaps) that runs
 * past the end of the file means the file was cut short (TFX_ERR_TRUNCATED); any other
 * range past the end is a bad offset (TFX_ERR_OFFSETS). */
static int check_layout(const RtStFile *f, RtStTensor **sorted, tfx_error *err)
{
    const RtStTensor *prev = NULL;
    int packed = 1;
    for (size_t i = 0; i < f->ntensors; i++) {
        const RtStTensor *t = sorted[i];
        if (t->begin == t->end)
            continue;
        if (prev && t->begin < prev->end)
            return rt_fail(err, TFX_ERR_OFFSETS, "%s: tensor '%s' (bytes %llu..%llu) overlaps "
                           "tensor '%s' (bytes %llu..%llu)", f->path, t->name,
                           (unsigned long long)t->begin, (unsigned long long)t->end, prev->name,
                           (unsigned long long)prev->begin, (unsigned long long)prev->end);
        packed &= t->begin == (prev ? prev->end : 0);
        prev = t;
    }
    for (size_t i = 0; i < f->ntensors; i++) {
        const RtStTensor *t = sorted[i];
        if (t->end <= f->data_len)
            continue;
        if (packed && t->begin != t->end)
            return rt_fail(err, TFX_ERR_TRUNCATED, "%s: file is truncated: tensor '%s' needs "
                           "data bytes %llu..%llu, but the data section has only %llu bytes",
                           f->path, t->name, (unsigned long long)t->begin,
                           (unsigned long long)t->end, (unsigned long long)f->data_len);
        return rt_fail(err, TFX_ERR_OFFSETS, "%s: tensor '%s': data_offsets [%llu, %llu] lie "
                       "outside the data section (%llu bytes)", f->path, t->name,
                       (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)f->data_len);
    }
    return TFX_OK;
}

static int check_offsets(RtStFile *f, const RtAlloc *a, tfx_error *err)
{
    for (size_t i = 0; i < f->ntensors; i++) {
        int rc = check_sizes(f, &f->tensors[i], err);
        if (rc != TFX_OK)
            return rc;
    }
    RtStTensor **sorted = rt_alloc_array(a, f->ntensors, sizeof *sorted);
    if (!sorted)
        return rt_fail(err, TFX_ERR_NOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->ntensors; i++)
        sorted[i] = &f->tensors[i];
    if (f->ntensors > 1)
        qsort(sorted, f->ntensors, sizeof *sorted, cmp_by_begin);
    int rc = check_layout(f, sorted, err);
    rt_free(a, sorted);
    for (size_t i = 0; rc == TFX_OK && i < f->ntensors; i++)
        f->tensors[i].data = f->data + f->tensors[i].begin;
    return rc;
}

/* ---- entry points ---- */

/* Reads the length prefix and parses the JSON that follows it. */
static int read_header(RtStFile *f, const RtAlloc *a, tfx_error *err)
{
    const unsigned char *bytes = f->map;
    uint64_t n = read_le64(bytes);
    if (n > f->size - 8)
        return rt_fail(err, TFX_ERR_TRUNCATED, "%s: file is truncated: the header length is "
                       "%llu bytes, but only %zu bytes follow the length prefix", f->path,
                       (unsigned long long)n, f->size - 8);
    f->data = bytes + 8 + n;
    f->data_len = f->size - 8 - n;
    int rc = rt_json_parse(a, (const char *)bytes + 8, (size_t)n, 8, &f->header, err);
    if (rc != TFX_OK) {
        tfx_error inner = err ? *err : (tfx_error){ 0 };
        return rt_fail(err, rc, "%s: %s", f->path, inner.message);
    }
    return TFX_OK;
}

int rt_st_open(RtStFile *f, const RtAlloc *a, const char *path, tfx_error *err)
{
    *f = (RtStFile){ .path = path };
    int rc = map_file(f, err);
    if (rc == TFX_OK)
        rc = read_header(f, a, err);
    if (rc == TFX_OK)
        rc = parse_header(f, a, err);
    if (rc == TFX_OK)
        rc = sort_names(f, err);
    if (rc == TFX_OK)
        rc = check_offsets(f, a, err);
    if (rc != TFX_OK)
        rt_st_dispose(f, a, 0);
    return rc;
}

void rt_st_dispose(RtStFile *f, const RtAlloc *a, int keep_map)
{
    if (f->map && !keep_map)
        munmap(f->map, f->size);
    rt_json_free(a, f->header);
    rt_free(a, f->tensors);
    rt_free(a, f->by_name);
    *f = (RtStFile){ .path = f->path };
}

const RtStTensor *rt_st_find(const RtStFile *f, const char *name)
{
    size_t lo = 0, hi = f->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0)
            return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
