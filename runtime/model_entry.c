/* model_entry.c - compiled into every model.so (never into libtfxrt itself): exports the
 * accessor through which a program reaches the descriptor that tfxc generated as the
 * hidden symbol tfx__model. */
#include "tfx.h"
#include "tfx_abi.h"

extern const TfxModelDesc tfx__model __attribute__((visibility("hidden")));

TFX_API const TfxModelDesc *tfx_model_desc(void)
{
    return &tfx__model;
}
