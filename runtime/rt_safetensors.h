/* rt_safetensors.h - reading a safetensors file: map it, parse and validate its header and
 * data layout, look tensors up by name. Knows nothing about models; rt_weights.c matches
 * the tensors against a model's weights. Format: docs/runtime.md, "Safetensors rules". */
#ifndef TFX_RUNTIME_RT_SAFETENSORS_H
#define TFX_RUNTIME_RT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "rt.h"
#include "rt_json.h"

/* Tensors of higher rank are rejected as a malformed header. */
#define RT_ST_MAX_RANK 16

/* Element types of the format. */
typedef enum RtStDtype {
    RT_ST_BOOL, RT_ST_U8, RT_ST_I8, RT_ST_F8_E4M3, RT_ST_F8_E5M2,
    RT_ST_I16, RT_ST_U16, RT_ST_F16, RT_ST_BF16,
    RT_ST_I32, RT_ST_U32, RT_ST_F32,
    RT_ST_I64, RT_ST_U64, RT_ST_F64,
    RT_ST_DTYPE_COUNT_
} RtStDtype;

typedef struct RtStTensor {
    const char          *name;     /* owned by the file's JSON tree */
    RtStDtype            dtype;
    int                  rank;
    int64_t              shape[RT_ST_MAX_RANK];
    uint64_t             begin, end;  /* data_offsets, relative to the data section */
    const unsigned char *data;     /* [end - begin] bytes inside the mapping */
} RtStTensor;

/* An open, fully validated file. */
typedef struct RtStFile {
    const char          *path;     /* as given by the caller, for messages */
    void                *map;      /* the whole file, read-only; NULL if not mapped */
    size_t               size;     /* file size in bytes */
    RtJson              *header;   /* the parsed header */
    RtStTensor          *tensors;  /* [ntensors] in file order ("__metadata__" excluded) */
    RtStTensor         **by_name;  /* [ntensors] sorted by name, for rt_st_find */
    size_t               ntensors;
    const unsigned char *data;     /* start of the data section */
    uint64_t             data_len; /* its length in bytes */
} RtStFile;

/* Maps path and validates it: length prefix, header JSON and structure, dtypes, offsets
 * (reversed, mis-sized, overlapping, out of range) and truncation. Returns TFX_OK, or
 * TFX_ERR_IO/HEADER/TRUNCATED/OFFSETS/NOMEM with a message naming path (and the tensor);
 * on failure nothing stays allocated or mapped. */
int rt_st_open(RtStFile *f, const RtAlloc *a, const char *path, tfx_error *err);
/* Frees everything; unmaps the file unless keep_map (the caller then owns f->map). */
void rt_st_dispose(RtStFile *f, const RtAlloc *a, int keep_map);
/* The tensor called name, or NULL. */
const RtStTensor *rt_st_find(const RtStFile *f, const char *name);

const char *rt_st_dtype_name(RtStDtype d);   /* "F32" */
size_t      rt_st_dtype_size(RtStDtype d);   /* bytes per element */

#endif
