/* The Events type of forwarder._core (module.c), for the other parts of the module's Python face
 * (reduce_module.c: filters and aggregation read its columns and make Events of the rows they keep). */
#ifndef NF_EVENTS_H
#define NF_EVENTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "flow.h"

#define MAX_VARIANTS 1024 /* distinct (state, encryption) pairs per batch; beyond, the reference parses */
#define MAX_PREFIX 64

typedef struct {
    PyObject *ctx;
    char prefix[MAX_PREFIX + 1];
    size_t prefix_len;
} group_t;

typedef struct {
    char state;
    char *enc;
    size_t enc_len;
    PyObject *state_obj, *enc_obj; /* built when first asked for */
} variant_t;

typedef struct EventsObject {
    PyObject_HEAD struct EventsObject *base; /* a view's storage; NULL for the Events that owns it */
    size_t start, len;                        /* a view's rows */
    nf_cols cols;
    group_t *groups;
    size_t ngroups, groups_cap;
    variant_t *variants;
    size_t nvariants, variants_cap;
    PyObject **py; /* the reference's FlowEvent of each python row (NULL elsewhere); allocated when needed */
    size_t py_cap;
    int frozen, busy;
} EventsObject;

extern PyTypeObject EventsType;

static inline EventsObject *storage(EventsObject *self) { return self->base ? self->base : self; }
static inline size_t rows_of(EventsObject *self) { return self->base ? self->len : self->cols.n; }
static inline size_t first_row(EventsObject *self) { return self->base ? self->start : 0; }

/* Freeze for reading (0), or -1 with an exception when another thread is filling it. */
int check_readable(EventsObject *self);
/* The groups a view's rows belong to: [g0, g1). */
void group_range(EventsObject *self, size_t *g0, size_t *g1);
/* A new Events of the rows of ``view`` whose keep[i] is 0 (``kept`` of them), in order: the groups they belong
 * to, every variant, their columns and the reference's events of their python rows. NULL with an exception. */
PyObject *events_select(EventsObject *view, const uint32_t *keep, size_t kept);

/* reduce_module.c: the Filter and Aggregator types, added to the module. */
int nf_add_reduce_types(PyObject *module);

#endif
