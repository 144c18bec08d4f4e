/* forwarder._core: the CPython face of the compiled core (flow.c parses, render.c renders).
 *
 * Events is a read-only sequence of FlowEvents backed by columns: the Normaliser fills one per batch
 * (add_list / add_span), formatters render it without building Python objects per tuple (render), and
 * anything else that looks at an event gets a real FlowEvent, built when asked for. Tuples the parser
 * leaves to the Python reference are placeholders (python rows) that the Normaliser resolves with the
 * reference's FlowEvent, or drops when the reference rejects them too.
 *
 * The loops over tuples run without the GIL. An Events is filled by one thread; once something reads
 * it (an item, a slice, a render) it is frozen and never changes again, so any number of threads may
 * read it at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>

#include "events.h"
#include "flow.h"

/* Per thread, kept between render calls: the output buffer (fresh memory for every call would cost a
 * page fault per 4 KiB written) and the Community ID cache. Freed when the thread ends. */
typedef struct {
    nf_buf buf;
    nf_cid_slot *cid;
} thread_scratch;

static pthread_key_t scratch_key;
#define SCRATCH_KEEP (64u << 20) /* a buffer grown beyond this by a huge batch is not kept */

static void free_scratch(void *p) {
    thread_scratch *t = p;
    if (t == NULL) return;
    free(t->buf.p);
    free(t->cid);
    free(t);
}

static thread_scratch *scratch(void) {
    thread_scratch *t = pthread_getspecific(scratch_key);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL) return NULL;
        t->cid = calloc(NF_CID_SLOTS, sizeof(nf_cid_slot)); /* NULL: no cache, still correct */
        if (pthread_setspecific(scratch_key, t)) {
            free_scratch(t);
            return NULL;
        }
    }
    return t;
}

static PyTypeObject *event_type; /* forwarder.flowlog.model.FlowEvent, set once at import */


static PyObject *Events_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Events() takes no arguments");
        return NULL;
    }
    EventsObject *self = (EventsObject *)type->tp_alloc(type, 0);
    return (PyObject *)self;
}

static void Events_dealloc(EventsObject *self) {
    if (self->base) {
        Py_DECREF(self->base);
    } else {
        for (size_t i = 0; i < self->ngroups; i++) Py_XDECREF(self->groups[i].ctx);
        for (size_t i = 0; i < self->nvariants; i++) {
            free(self->variants[i].enc);
            Py_XDECREF(self->variants[i].state_obj);
            Py_XDECREF(self->variants[i].enc_obj);
        }
        if (self->py)
            for (size_t i = 0; i < self->cols.n; i++) Py_XDECREF(self->py[i]);
        free(self->py);
        free(self->groups);
        free(self->variants);
        nf_cols_free(&self->cols);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The python-row column covers every allocated row once it exists (rows are added after it was made). */
static int cover_py(EventsObject *self) {
    if (self->py == NULL || self->py_cap >= self->cols.cap) return 0;
    PyObject **py = realloc(self->py, self->cols.cap * sizeof(PyObject *));
    if (py == NULL) return -1;
    memset(py + self->py_cap, 0, (self->cols.cap - self->py_cap) * sizeof(PyObject *));
    self->py = py;
    self->py_cap = self->cols.cap;
    return 0;
}

/* The python-row column, made when the first python row needs it and covering every row; -1: out of memory. */
static int py_column(EventsObject *self) {
    if (self->py == NULL) {
        self->py = calloc(self->cols.cap, sizeof(PyObject *));
        if (self->py == NULL) return -1;
        self->py_cap = self->cols.cap;
    }
    return cover_py(self);
}

static int check_writable(EventsObject *self) {
    if (self->base || self->frozen || self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "these events can no longer be added to");
        return -1;
    }
    return 0;
}

int check_readable(EventsObject *self) {
    EventsObject *s = storage(self);
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "these events are being filled by another thread");
        return -1;
    }
    s->frozen = 1;
    return 0;
}

/* The variant of (state, encryption), added when new; -1 when the table is full or out of memory. */
static int variant_of(EventsObject *self, char state, const char *enc, size_t enc_len) {
    for (size_t i = self->nvariants; i-- > 0;) {
        variant_t *v = &self->variants[i];
        if (v->state == state && v->enc_len == enc_len && memcmp(v->enc, enc, enc_len) == 0) return (int)i;
    }
    if (self->nvariants >= MAX_VARIANTS) return -1;
    if (self->nvariants == self->variants_cap) {
        /* Grown as needed: a batch has a handful of (state, encryption) pairs, and the batch of one small blob
         * must not hold room for the most any batch may have (40 KB, times every blob in flight). */
        size_t cap = self->variants_cap ? 2 * self->variants_cap : 8;
        variant_t *grown = realloc(self->variants, cap * sizeof(variant_t));
        if (grown == NULL) return -1;
        memset(grown + self->variants_cap, 0, (cap - self->variants_cap) * sizeof(variant_t));
        self->variants = grown;
        self->variants_cap = cap;
    }
    variant_t *v = &self->variants[self->nvariants];
    v->enc = malloc(enc_len + 1);
    if (v->enc == NULL) return -1;
    memcpy(v->enc, enc, enc_len);
    v->enc[enc_len] = 0;
    v->enc_len = enc_len;
    v->state = state;
    return (int)self->nvariants++;
}

/* Parse one tuple into a row, or a python row when the reference must judge it. -1: out of memory. */
static int add_tuple(EventsObject *self, const char *s, size_t n, int layout, uint32_t group, int64_t index,
                     int *deferred) {
    nf_tuple t;
    if (s != NULL && nf_parse_tuple(s, n, layout, &t)) {
        int v = variant_of(self, t.state, t.enc, t.enc_len);
        if (v >= 0) {
            *deferred = 0;
            return nf_cols_push(&self->cols, &t, group, index, (uint16_t)v);
        }
    }
    *deferred = 1;
    return nf_cols_push_python(&self->cols, group, index);
}

static int add_group(EventsObject *self, PyObject *ctx, PyObject *prefix, size_t rows) {
    Py_ssize_t plen;
    const char *p = PyUnicode_Check(prefix) && PyUnicode_IS_ASCII(prefix) ? PyUnicode_AsUTF8AndSize(prefix, &plen) : NULL;
    if (p == NULL || plen > MAX_PREFIX) {
        PyErr_SetString(PyExc_ValueError, "the event id prefix must be ASCII text of at most 64 characters");
        return -1;
    }
    if (self->ngroups >= UINT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many rule groups in one batch");
        return -1;
    }
    if (self->ngroups == self->groups_cap) {
        size_t cap = self->groups_cap ? 2 * self->groups_cap : 8;
        group_t *g = realloc(self->groups, cap * sizeof(group_t));
        if (g == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->groups = g;
        self->groups_cap = cap;
    }
    if (nf_cols_reserve(&self->cols, rows) || cover_py(self)) {
        PyErr_NoMemory();
        return -1;
    }
    group_t *g = &self->groups[self->ngroups++];
    Py_INCREF(ctx);
    g->ctx = ctx;
    memcpy(g->prefix, p, (size_t)plen);
    g->prefix[plen] = 0;
    g->prefix_len = (size_t)plen;
    return 0;
}

static int check_layout(int layout) {
    if (layout < NF_NSG1 || layout > NF_VNET4) {
        PyErr_SetString(PyExc_ValueError, "unknown tuple layout");
        return -1;
    }
    return 0;
}

static PyObject *Events_add_items(EventsObject *self, PyObject *ctx, PyObject *prefix, int layout, PyObject *tuples,
                                  long long first);

/* add_list(ctx, id_prefix, layout, tuples, first_index) -> [(row, tuple index, raw tuple), ...] to resolve */
static PyObject *Events_add_list(EventsObject *self, PyObject *args) {
    PyObject *ctx, *prefix, *tuples;
    int layout;
    long long first;
    if (!PyArg_ParseTuple(args, "OUiO!L", &ctx, &prefix, &layout, &PyList_Type, &tuples, &first)) return NULL;
    if (check_writable(self) || check_layout(layout)) return NULL;
    /* Our own list of the items: they stay alive while the GIL is released, whatever happens to the caller's. */
    tuples = PyList_GetSlice(tuples, 0, PyList_GET_SIZE(tuples));
    if (tuples == NULL) return NULL;
    PyObject *out = Events_add_items(self, ctx, prefix, layout, tuples, first);
    Py_DECREF(tuples);
    return out;
}

static PyObject *Events_add_items(EventsObject *self, PyObject *ctx, PyObject *prefix, int layout, PyObject *tuples,
                                  long long first) {
    size_t n = (size_t)PyList_GET_SIZE(tuples);
    if (add_group(self, ctx, prefix, n)) return NULL;
    uint32_t group = (uint32_t)(self->ngroups - 1);
    const char **ptr = PyMem_Malloc((n ? n : 1) * sizeof(char *));
    size_t *len = PyMem_Malloc((n ? n : 1) * sizeof(size_t));
    size_t *deferred = PyMem_Malloc((n ? n : 1) * sizeof(size_t));
    if (!ptr || !len || !deferred) {
        PyMem_Free(ptr);
        PyMem_Free(len);
        PyMem_Free(deferred);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(tuples, i);
        if (PyUnicode_CheckExact(item) && PyUnicode_IS_COMPACT_ASCII(item)) {
            ptr[i] = PyUnicode_DATA(item);
            len[i] = (size_t)PyUnicode_GET_LENGTH(item);
        } else {
            ptr[i] = NULL; /* not ASCII text: the reference says what it is */
            len[i] = 0;
        }
    }
    size_t ndeferred = 0, base_row = self->cols.n;
    int failed = 0;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS for (size_t i = 0; i < n && !failed; i++) {
        int d;
        failed = add_tuple(self, ptr[i], len[i], layout, group, first + (int64_t)i, &d);
        if (d) deferred[ndeferred++] = i;
    }
    Py_END_ALLOW_THREADS self->busy = 0;
    PyObject *out = failed ? PyErr_NoMemory() : PyList_New((Py_ssize_t)ndeferred);
    for (size_t k = 0; out && k < ndeferred; k++) {
        size_t i = deferred[k];
        PyObject *entry = Py_BuildValue("(nLO)", (Py_ssize_t)(base_row + i), first + (long long)i,
                                        PyList_GET_ITEM(tuples, i));
        if (entry == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)k, entry);
    }
    PyMem_Free(ptr);
    PyMem_Free(len);
    PyMem_Free(deferred);
    return out;
}

/* add_span(ctx, id_prefix, layout, text, pos, end, count, first_index) -> (next pos, [(row, index, raw), ...])
 * ``count`` tuples of a flowTuples array cut from ASCII JSON text, starting at ``pos``. */
static PyObject *Events_add_span(EventsObject *self, PyObject *args) {
    PyObject *ctx, *prefix, *text;
    int layout;
    Py_ssize_t pos, end, count;
    long long first;
    if (!PyArg_ParseTuple(args, "OUiUnnnL", &ctx, &prefix, &layout, &text, &pos, &end, &count, &first)) return NULL;
    if (check_writable(self) || check_layout(layout)) return NULL;
    if (!PyUnicode_IS_COMPACT_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "add_span needs ASCII text");
        return NULL;
    }
    if (pos < 0 || end < pos || end > PyUnicode_GET_LENGTH(text) || count < 0) {
        PyErr_SetString(PyExc_ValueError, "span outside the text");
        return NULL;
    }
    if (add_group(self, ctx, prefix, (size_t)count)) return NULL;
    uint32_t group = (uint32_t)(self->ngroups - 1);
    const char *s = PyUnicode_DATA(text);
    size_t *deferred = PyMem_Malloc(((size_t)count ? (size_t)count : 1) * 3 * sizeof(size_t));
    if (deferred == NULL) return PyErr_NoMemory();
    size_t ndeferred = 0, base_row = self->cols.n, at = (size_t)pos;
    int failed = 0;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < count && !failed; i++) {
        size_t next, n = nf_next_span_tuple(s, at, (size_t)end, &next);
        int d;
        failed = add_tuple(self, s + at, n, layout, group, first + i, &d);
        if (d) {
            deferred[3 * ndeferred] = (size_t)i;
            deferred[3 * ndeferred + 1] = at;
            deferred[3 * ndeferred++ + 2] = n;
        }
        at = next;
    }
    Py_END_ALLOW_THREADS self->busy = 0;
    PyObject *out = failed ? PyErr_NoMemory() : PyList_New((Py_ssize_t)ndeferred);
    for (size_t k = 0; out && k < ndeferred; k++) {
        size_t i = deferred[3 * k], begin = deferred[3 * k + 1];
        PyObject *raw = PyUnicode_Substring(text, (Py_ssize_t)begin, (Py_ssize_t)(begin + deferred[3 * k + 2]));
        PyObject *entry = raw ? Py_BuildValue("(nLN)", (Py_ssize_t)(base_row + i), first + (long long)i, raw) : NULL;
        if (entry == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)k, entry);
    }
    PyMem_Free(deferred);
    if (out == NULL) return NULL;
    return Py_BuildValue("(nN)", (Py_ssize_t)at, out);
}

/* resolve(row, event_or_None): the reference's verdict on a python row. */
static PyObject *Events_resolve(EventsObject *self, PyObject *args) {
    Py_ssize_t row;
    PyObject *event;
    if (!PyArg_ParseTuple(args, "nO", &row, &event)) return NULL;
    if (check_writable(self)) return NULL;
    if (row < 0 || (size_t)row >= self->cols.n || !(self->cols.flags[row] & NF_PYTHON)) {
        PyErr_SetString(PyExc_IndexError, "not a row waiting for the reference");
        return NULL;
    }
    if (event == Py_None) {
        self->cols.flags[row] |= NF_DEAD;
        Py_RETURN_NONE;
    }
    if (py_column(self)) return PyErr_NoMemory();
    Py_INCREF(event);
    Py_XSETREF(self->py[row], event);
    Py_RETURN_NONE;
}

/* compact(): drop the rows the reference rejected. */
static PyObject *Events_compact(EventsObject *self, PyObject *unused) {
    if (check_writable(self)) return NULL;
    if (self->py) {
        size_t w = 0;
        for (size_t r = 0; r < self->cols.n; r++) {
            if (self->cols.flags[r] & NF_DEAD) continue;
            self->py[w++] = self->py[r];
        }
        for (size_t r = w; r < self->cols.n; r++) self->py[r] = NULL;
    }
    nf_cols_compact(&self->cols);
    Py_RETURN_NONE;
}

static Py_ssize_t Events_length(EventsObject *self) { return (Py_ssize_t)rows_of(self); }

static PyObject *ascii_text(const char *p, size_t n) {
    PyObject *s = PyUnicode_New((Py_ssize_t)n, 127);
    if (s) memcpy(PyUnicode_DATA(s), p, n);
    return s;
}

static PyObject *variant_state(variant_t *v) {
    if (v->state_obj == NULL) v->state_obj = PyUnicode_FromStringAndSize(&v->state, v->state ? 1 : 0);
    return v->state_obj;
}

static PyObject *variant_enc(variant_t *v) {
    if (v->enc_obj == NULL) v->enc_obj = ascii_text(v->enc, v->enc_len);
    return v->enc_obj;
}

static PyObject *counter(const nf_cols *c, size_t r, int k) {
    if (!(c->flags[r] & NF_COUNTERS)) Py_RETURN_NONE;
    return PyLong_FromLongLong(c->counters[r][k]);
}

/* The FlowEvent of a row (absolute row of the storage). */
static PyObject *event_at(EventsObject *s, size_t r) {
    const nf_cols *c = &s->cols;
    if (c->flags[r] & NF_PYTHON) {
        PyObject *e = s->py ? s->py[r] : NULL;
        if (e == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "a tuple left to the reference was never resolved");
            return NULL;
        }
        Py_INCREF(e);
        return e;
    }
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "forwarder._core.set_event_type was not called");
        return NULL;
    }
    group_t *g = &s->groups[c->group[r]];
    variant_t *v = &s->variants[c->variant[r]];
    char id[MAX_PREFIX + 24];
    int idn = snprintf(id, sizeof(id), "%s-%lld", g->prefix, (long long)c->index[r]);
    PyObject *state = variant_state(v), *enc = variant_enc(v);
    if (state == NULL || enc == NULL) return NULL;
    PyObject *items[16] = {
        Py_NewRef(g->ctx),
        ascii_text(id, (size_t)idn),
        PyLong_FromLongLong(c->ts_ms[r]),
        ascii_text(c->text + c->src_off[r], c->src_len[r]),
        ascii_text(c->text + c->dst_off[r], c->dst_len[r]),
        PyLong_FromLong(c->sport[r]),
        PyLong_FromLong(c->dport[r]),
        PyLong_FromLong(c->proto[r]),
        PyBool_FromLong(c->flags[r] & NF_INBOUND),
        PyBool_FromLong(c->flags[r] & NF_ALLOWED),
        Py_NewRef(state),
        Py_NewRef(enc),
        counter(c, r, 0),
        counter(c, r, 1),
        counter(c, r, 2),
        counter(c, r, 3),
    };
    PyObject *e = event_type->tp_alloc(event_type, 16);
    for (int i = 0; i < 16; i++) {
        if (items[i] == NULL || e == NULL) {
            for (int j = 0; j < 16; j++) Py_XDECREF(items[j]);
            Py_XDECREF(e);
            return NULL;
        }
    }
    for (int i = 0; i < 16; i++) PyTuple_SET_ITEM(e, i, items[i]);
    return e;
}

static PyObject *Events_item(EventsObject *self, Py_ssize_t i) {
    if (check_readable(self)) return NULL;
    if (i < 0 || (size_t)i >= rows_of(self)) {
        PyErr_SetString(PyExc_IndexError, "event index out of range");
        return NULL;
    }
    return event_at(storage(self), first_row(self) + (size_t)i);
}

static PyObject *Events_subscript(EventsObject *self, PyObject *key) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0) i += (Py_ssize_t)rows_of(self);
        return Events_item(self, i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "event indices must be integers or slices, not %.200s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    if (check_readable(self)) return NULL;
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
    Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)rows_of(self), &start, &stop, step);
    if (step != 1) {
        PyObject *list = PyList_New(n);
        for (Py_ssize_t k = 0; list && k < n; k++) {
            PyObject *e = Events_item(self, start + k * step);
            if (e == NULL) Py_CLEAR(list);
            else PyList_SET_ITEM(list, k, e);
        }
        return list;
    }
    EventsObject *view = (EventsObject *)EventsType.tp_alloc(&EventsType, 0);
    if (view == NULL) return NULL;
    EventsObject *s = storage(self);
    Py_INCREF(s);
    view->base = s;
    view->start = first_row(self) + (size_t)start;
    view->len = (size_t)n;
    return (PyObject *)view;
}

/* The groups a view's rows belong to: [g0, g1). */
void group_range(EventsObject *self, size_t *g0, size_t *g1) {
    EventsObject *s = storage(self);
    size_t n = rows_of(self), r0 = first_row(self);
    if (n == 0) {
        *g0 = *g1 = 0;
        return;
    }
    *g0 = s->cols.group[r0];
    *g1 = (size_t)s->cols.group[r0 + n - 1] + 1;
}

/* contexts() -> the FlowContext of each rule group the rows belong to, in order. */
static PyObject *Events_contexts(EventsObject *self, PyObject *unused) {
    if (check_readable(self)) return NULL;
    size_t g0, g1;
    group_range(self, &g0, &g1);
    PyObject *out = PyList_New((Py_ssize_t)(g1 - g0));
    for (size_t g = g0; out && g < g1; g++) PyList_SET_ITEM(out, (Py_ssize_t)(g - g0), Py_NewRef(storage(self)->groups[g].ctx));
    return out;
}

/* variants() -> [(state, encryption), ...]: the distinct pairs rows refer to. */
static PyObject *Events_variants(EventsObject *self, PyObject *unused) {
    if (check_readable(self)) return NULL;
    EventsObject *s = storage(self);
    PyObject *out = PyList_New((Py_ssize_t)s->nvariants);
    for (size_t i = 0; out && i < s->nvariants; i++) {
        PyObject *state = variant_state(&s->variants[i]), *enc = variant_enc(&s->variants[i]);
        PyObject *pair = state && enc ? PyTuple_Pack(2, state, enc) : NULL;
        if (pair == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)i, pair);
    }
    return out;
}

/* python_rows() -> indices (in this sequence) of the rows the reference parsed. */
static PyObject *Events_python_rows(EventsObject *self, PyObject *unused) {
    if (check_readable(self)) return NULL;
    EventsObject *s = storage(self);
    size_t r0 = first_row(self), n = rows_of(self);
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && i < n; i++) {
        if (!(s->cols.flags[r0 + i] & NF_PYTHON)) continue;
        PyObject *k = PyLong_FromSize_t(i);
        if (k == NULL || PyList_Append(out, k)) Py_CLEAR(out);
        Py_XDECREF(k);
    }
    return out;
}

/* Pieces: a sequence of str as nf_str; *ascii cleared when one is not ASCII. */
static int pieces_of(PyObject *seq, size_t want, nf_str *out, int *ascii, size_t *total) {
    if (!PyTuple_Check(seq) || (size_t)PyTuple_GET_SIZE(seq) != want) {
        PyErr_Format(PyExc_TypeError, "expected a tuple of %zu str pieces", want);
        return -1;
    }
    for (size_t i = 0; i < want; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, (Py_ssize_t)i);
        Py_ssize_t n;
        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "pieces must be str");
            return -1;
        }
        const char *p = PyUnicode_AsUTF8AndSize(item, &n);
        if (p == NULL) return -1;
        if (!PyUnicode_IS_ASCII(item)) *ascii = 0;
        out[i].p = p;
        out[i].n = (size_t)n;
        if (total) *total += (size_t)n;
    }
    return 0;
}

static const size_t G_STRIDE[] = {5, 2, 3, 4}, GV_STRIDE[] = {3, 2, 3, 3}, GLOB[] = {512, 256, 512, 1280};
/* How many global pieces one row can take (ASIM: its network members, its ICMP type, its protocol number). */
static const size_t GLOB_PER_ROW[] = {1, 1, 1, 3};

/* render(format, events, group_pieces, variant_pieces, global_pieces, python_lines, joined)
 *   -> list of lines (str), or with ``joined`` the lines as UTF-8 bytes, each followed by a newline.
 * group_pieces[g] and variant_pieces[g][v] are for the groups of events.contexts(), variants of
 * events.variants(); python_lines are the reference's lines for events.python_rows(), in order. */
static PyObject *render(PyObject *module, PyObject *args) {
    int fmt, joined;
    EventsObject *ev;
    PyObject *gseq, *gvseq, *glob, *pylines;
    if (!PyArg_ParseTuple(args, "iO!O!O!O!O!p", &fmt, &EventsType, &ev, &PyList_Type, &gseq, &PyList_Type, &gvseq,
                          &PyTuple_Type, &glob, &PyList_Type, &pylines, &joined))
        return NULL;
    if (fmt < NF_ECS || fmt > NF_ASIM) {
        PyErr_SetString(PyExc_ValueError, "unknown format");
        return NULL;
    }
    if (check_readable(ev)) return NULL;
    EventsObject *s = storage(ev);
    size_t g0, g1, r0 = first_row(ev), n = rows_of(ev);
    group_range(ev, &g0, &g1);
    size_t ng = g1 - g0, nv = s->nvariants, gs = G_STRIDE[fmt], gvs = GV_STRIDE[fmt];
    if ((size_t)PyList_GET_SIZE(gseq) != ng || (size_t)PyList_GET_SIZE(gvseq) != ng) {
        PyErr_SetString(PyExc_ValueError, "one entry of pieces per rule group expected");
        return NULL;
    }
    PyObject *result = NULL;
    nf_str *g = PyMem_Calloc(ng * gs + 1, sizeof(nf_str));
    nf_str *gv = PyMem_Calloc(ng * nv * gvs + 1, sizeof(nf_str));
    nf_str *gl = PyMem_Calloc(GLOB[fmt], sizeof(nf_str));
    int *group_ascii = PyMem_Calloc(ng + 1, sizeof(int));
    const char **prefix = PyMem_Calloc(ng + 1, sizeof(char *));
    size_t *prefix_len = PyMem_Calloc(ng + 1, sizeof(size_t));
    size_t *ends = PyMem_Calloc(n + 1, sizeof(size_t));
    nf_str *py = NULL;
    if (!g || !gv || !gl || !group_ascii || !prefix || !prefix_len || !ends) {
        PyErr_NoMemory();
        goto done;
    }
    size_t max_g = 0, max_gv = 0, max_glob = 0, max_prefix = 0;
    int glob_ascii = 1;
    if (pieces_of(glob, GLOB[fmt], gl, &glob_ascii, NULL)) goto done;
    for (size_t i = 0; i < GLOB[fmt]; i++) max_glob = gl[i].n > max_glob ? gl[i].n : max_glob;
    for (size_t i = 0; i < ng; i++) {
        size_t total = 0;
        group_ascii[i] = glob_ascii;
        if (pieces_of(PyList_GET_ITEM(gseq, (Py_ssize_t)i), gs, g + i * gs, &group_ascii[i], &total)) goto done;
        max_g = total > max_g ? total : max_g;
        PyObject *per_variant = PyList_GET_ITEM(gvseq, (Py_ssize_t)i);
        if (!PyList_Check(per_variant) || (size_t)PyList_GET_SIZE(per_variant) != nv) {
            PyErr_SetString(PyExc_ValueError, "one entry of pieces per variant expected");
            goto done;
        }
        for (size_t v = 0; v < nv; v++) {
            total = 0;
            if (pieces_of(PyList_GET_ITEM(per_variant, (Py_ssize_t)v), gvs, gv + (i * nv + v) * gvs, &group_ascii[i],
                          &total))
                goto done;
            max_gv = total > max_gv ? total : max_gv;
        }
        prefix[i] = s->groups[g0 + i].prefix;
        prefix_len[i] = s->groups[g0 + i].prefix_len;
        max_prefix = prefix_len[i] > max_prefix ? prefix_len[i] : max_prefix;
    }
    size_t npy = (size_t)PyList_GET_SIZE(pylines), seen_py = 0;
    py = PyMem_Calloc(npy + 1, sizeof(nf_str));
    if (py == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < npy; i++) {
        PyObject *line = PyList_GET_ITEM(pylines, (Py_ssize_t)i);
        Py_ssize_t len;
        const char *p = PyUnicode_Check(line) ? PyUnicode_AsUTF8AndSize(line, &len) : NULL;
        if (p == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "python lines must be str");
            goto done;
        }
        py[i].p = p;
        py[i].n = (size_t)len;
    }
    for (size_t i = 0; i < n; i++) seen_py += (s->cols.flags[r0 + i] & NF_PYTHON) != 0;
    if (seen_py != npy) {
        PyErr_SetString(PyExc_ValueError, "one python line per python row expected");
        goto done;
    }
    size_t max_piece = max_g + max_gv + max_glob * GLOB_PER_ROW[fmt] + max_prefix;
    nf_pieces pc = {g, gs, gv, gvs, nv, gl, prefix, prefix_len, (uint32_t)g0, max_piece};
    thread_scratch *ts = scratch();
    if (ts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    ts->buf.n = 0;
    nf_buf buf = ts->buf;
    nf_scratch sc = {0};
    sc.cid = nf_sha1_is_fast() ? NULL : ts->cid;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS size_t k = 0;
    for (size_t i = 0; i < n && !failed; i++) {
        size_t r = r0 + i;
        if (s->cols.flags[r] & NF_PYTHON) {
            const nf_str *line = &py[k++];
            failed = nf_buf_reserve(&buf, line->n + 1);
            if (!failed) {
                memcpy(buf.p + buf.n, line->p, line->n);
                buf.n += line->n;
            }
        } else {
            failed = nf_render_row(fmt, &s->cols, r, &pc, &sc, &buf);
        }
        ends[i] = buf.n;
        if (joined && !failed) buf.p[buf.n++] = '\n'; /* room: ROW_VALUES, or the +1 above */
    }
    Py_END_ALLOW_THREADS ts->buf = buf;
    if (failed) {
        PyErr_NoMemory();
        goto release;
    }
    if (joined) {
        result = PyBytes_FromStringAndSize(buf.p ? buf.p : "", (Py_ssize_t)buf.n);
        goto release;
    }
    result = PyList_New((Py_ssize_t)n);
    size_t begin = 0, k2 = 0;
    for (size_t i = 0; result && i < n; i++) {
        size_t r = r0 + i;
        PyObject *line;
        if (s->cols.flags[r] & NF_PYTHON) {
            line = Py_NewRef(PyList_GET_ITEM(pylines, (Py_ssize_t)k2++));
        } else if (group_ascii[s->cols.group[r] - g0]) {
            line = ascii_text(buf.p + begin, ends[i] - begin);
        } else {
            line = PyUnicode_DecodeUTF8(buf.p + begin, (Py_ssize_t)(ends[i] - begin), "strict");
        }
        if (line == NULL) Py_CLEAR(result);
        else PyList_SET_ITEM(result, (Py_ssize_t)i, line);
        begin = ends[i];
    }
release:
    if (ts->buf.cap > SCRATCH_KEEP) {
        free(ts->buf.p);
        memset(&ts->buf, 0, sizeof(ts->buf));
    }
done:
    PyMem_Free(g);
    PyMem_Free(gv);
    PyMem_Free(gl);
    PyMem_Free(group_ascii);
    PyMem_Free(prefix);
    PyMem_Free(prefix_len);
    PyMem_Free(ends);
    PyMem_Free(py);
    return result;
}

/* concat(batches) -> one Events holding the rows of every Events (or view) of ``batches``, in order:
 * a pipeline that gathers several batches into one chunk keeps them as columns. */
static PyObject *concat(PyObject *module, PyObject *batches) {
    if (!PyList_Check(batches)) {
        PyErr_SetString(PyExc_TypeError, "concat takes a list of Events");
        return NULL;
    }
    size_t total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(batches); i++) {
        PyObject *item = PyList_GET_ITEM(batches, i);
        if (Py_TYPE(item) != &EventsType) {
            PyErr_SetString(PyExc_TypeError, "concat takes a list of Events");
            return NULL;
        }
        if (check_readable((EventsObject *)item)) return NULL;
        total += rows_of((EventsObject *)item);
    }
    EventsObject *out = (EventsObject *)EventsType.tp_alloc(&EventsType, 0);
    if (out == NULL) return NULL;
    if (nf_cols_reserve(&out->cols, total)) goto nomem;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(batches); i++) {
        EventsObject *view = (EventsObject *)PyList_GET_ITEM(batches, i), *s = storage(view);
        size_t r0 = first_row(view), n = rows_of(view);
        if (n == 0) continue;
        size_t g0, g1;
        group_range(view, &g0, &g1);
        uint32_t group_base = (uint32_t)out->ngroups;
        for (size_t g = g0; g < g1; g++) {
            PyObject *prefix = PyUnicode_FromString(s->groups[g].prefix);
            int failed = prefix == NULL || add_group(out, s->groups[g].ctx, prefix, 0);
            Py_XDECREF(prefix);
            if (failed) goto fail;
        }
        for (size_t k = 0; k < n; k++) {
            size_t r = r0 + k, w = out->cols.n;
            const nf_cols *c = &s->cols;
            uint32_t group = group_base + (c->group[r] - (uint32_t)g0);
            if (c->flags[r] & NF_PYTHON) {
                if (nf_cols_push_python(&out->cols, group, c->index[r])) goto nomem;
                PyObject *e = s->py ? s->py[r] : NULL;
                if (e == NULL) {
                    PyErr_SetString(PyExc_RuntimeError, "a tuple left to the reference was never resolved");
                    goto fail;
                }
                if (py_column(out)) goto nomem;
                out->py[w] = Py_NewRef(e);
                continue;
            }
            variant_t *v = &s->variants[c->variant[r]];
            int variant = variant_of(out, v->state, v->enc, v->enc_len);
            if (variant < 0) {
                PyErr_SetString(PyExc_OverflowError, "too many (state, encryption) pairs for one batch");
                goto fail;
            }
            nf_tuple t = {0};
            t.ts_ms = c->ts_ms[r];
            t.src = c->text + c->src_off[r];
            t.src_len = c->src_len[r];
            t.dst = c->text + c->dst_off[r];
            t.dst_len = c->dst_len[r];
            memcpy(t.src_bin, c->src_bin[r], 16);
            memcpy(t.dst_bin, c->dst_bin[r], 16);
            t.v6 = (c->flags[r] & NF_V6) != 0;
            t.inbound = (c->flags[r] & NF_INBOUND) != 0;
            t.allowed = (c->flags[r] & NF_ALLOWED) != 0;
            t.has_counters = (c->flags[r] & NF_COUNTERS) != 0;
            t.proto = c->proto[r];
            t.sport = c->sport[r];
            t.dport = c->dport[r];
            t.state = c->state[r];
            memcpy(t.counters, c->counters[r], sizeof(t.counters));
            if (nf_cols_push(&out->cols, &t, group, c->index[r], (uint16_t)variant)) goto nomem;
        }
    }
    return (PyObject *)out;
nomem:
    PyErr_NoMemory();
fail:
    Py_DECREF(out);
    return NULL;
}

/* events_select (events.h): the columns of the kept rows are copied without the GIL (a filter keeps most rows
 * of a batch as often as it keeps few); the groups they belong to, every variant (the rows keep their variant
 * numbers) and the reference's events of the python rows with it. */
PyObject *events_select(EventsObject *view, const uint32_t *keep, size_t kept) {
    EventsObject *s = storage(view);
    size_t r0 = first_row(view), n = rows_of(view), g0, g1;
    group_range(view, &g0, &g1);
    EventsObject *out = (EventsObject *)EventsType.tp_alloc(&EventsType, 0);
    uint32_t *regroup = PyMem_Malloc((g1 - g0 + 1) * sizeof(uint32_t));
    if (out == NULL || regroup == NULL) goto nomem;
    if (kept == 0) goto done;
    if (nf_cols_reserve(&out->cols, kept)) goto nomem;
    if (s->nvariants) {
        out->variants = calloc(s->nvariants, sizeof(variant_t));
        if (out->variants == NULL) goto nomem;
        out->variants_cap = s->nvariants;
        for (size_t v = 0; v < s->nvariants; v++) {
            const variant_t *from = &s->variants[v];
            variant_t *to = &out->variants[v];
            to->enc = malloc(from->enc_len + 1);
            if (to->enc == NULL) goto nomem;
            memcpy(to->enc, from->enc, from->enc_len + 1);
            to->enc_len = from->enc_len;
            to->state = from->state;
            out->nvariants = v + 1;
        }
    }
    for (size_t g = g0; g < g1; g++) regroup[g - g0] = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        if (keep[i]) continue;
        size_t g = s->cols.group[r0 + i];
        if (regroup[g - g0] != UINT32_MAX) continue;
        PyObject *prefix = PyUnicode_FromString(s->groups[g].prefix);
        int failed = prefix == NULL || add_group(out, s->groups[g].ctx, prefix, 0);
        Py_XDECREF(prefix);
        if (failed) goto fail;
        regroup[g - g0] = (uint32_t)(out->ngroups - 1);
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS for (size_t i = 0; i < n && !failed; i++) {
        size_t r = r0 + i;
        if (keep[i] == 0) failed = nf_cols_copy_row(&out->cols, &s->cols, r, regroup[s->cols.group[r] - g0]);
    }
    Py_END_ALLOW_THREADS if (failed) goto nomem;
    if (s->py) {
        for (size_t i = 0, w = 0; i < n; i++) {
            size_t r = r0 + i;
            if (keep[i]) continue;
            if (s->cols.flags[r] & NF_PYTHON) {
                if (s->py[r] == NULL) {
                    PyErr_SetString(PyExc_RuntimeError, "a tuple left to the reference was never resolved");
                    goto fail;
                }
                if (py_column(out)) goto nomem;
                out->py[w] = Py_NewRef(s->py[r]);
            }
            w++;
        }
    }
done:
    PyMem_Free(regroup);
    return (PyObject *)out;
nomem:
    PyErr_NoMemory();
fail:
    PyMem_Free(regroup);
    Py_XDECREF(out);
    return NULL;
}

/* count_tuples(text, start, end) -> tuples in the flowTuples array text[start:end] (quote to quote), or -1
 * when it is not in the plain form (see nf_count_span_tuples). */
static PyObject *count_tuples(PyObject *module, PyObject *args) {
    PyObject *text;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "Unn", &text, &start, &end)) return NULL;
    if (start < 0 || end < start || end > PyUnicode_GET_LENGTH(text)) {
        PyErr_SetString(PyExc_ValueError, "span outside the text");
        return NULL;
    }
    if (!PyUnicode_IS_COMPACT_ASCII(text)) return PyLong_FromLong(-2); /* not for this function */
    const char *s = PyUnicode_DATA(text);
    long n;
    Py_BEGIN_ALLOW_THREADS n = nf_count_span_tuples(s, (size_t)start, (size_t)end);
    Py_END_ALLOW_THREADS return PyLong_FromLong(n);
}

static PyObject *set_event_type(PyObject *module, PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the event type must be a tuple subclass (FlowEvent)");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(event_type, (PyTypeObject *)cls);
    Py_RETURN_NONE;
}

static PyMethodDef Events_methods[] = {
    {"add_list", (PyCFunction)Events_add_list, METH_VARARGS, "Parse a list of tuple strings as one rule group."},
    {"add_span", (PyCFunction)Events_add_span, METH_VARARGS, "Parse tuples cut from ASCII JSON text as one rule group."},
    {"resolve", (PyCFunction)Events_resolve, METH_VARARGS, "Give a python row the reference's event, or None."},
    {"compact", (PyCFunction)Events_compact, METH_NOARGS, "Drop the rows resolved with None."},
    {"contexts", (PyCFunction)Events_contexts, METH_NOARGS, "The FlowContext of each rule group of the rows."},
    {"variants", (PyCFunction)Events_variants, METH_NOARGS, "The distinct (state, encryption) pairs."},
    {"python_rows", (PyCFunction)Events_python_rows, METH_NOARGS, "Indices of the rows the reference parsed."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Events_as_sequence = {
    .sq_length = (lenfunc)Events_length,
    .sq_item = (ssizeargfunc)Events_item,
};

static PyMappingMethods Events_as_mapping = {
    .mp_length = (lenfunc)Events_length,
    .mp_subscript = (binaryfunc)Events_subscript,
};

PyTypeObject EventsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "forwarder._core.Events",
    .tp_doc = PyDoc_STR("FlowEvents of one batch, kept as columns; a real FlowEvent is built when one is asked for."),
    .tp_basicsize = sizeof(EventsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_SEQUENCE,
    .tp_new = Events_new,
    .tp_dealloc = (destructor)Events_dealloc,
    .tp_as_sequence = &Events_as_sequence,
    .tp_as_mapping = &Events_as_mapping,
    .tp_methods = Events_methods,
};

static PyMethodDef module_methods[] = {
    {"render", render, METH_VARARGS, "Render events as lines of one format."},
    {"set_event_type", set_event_type, METH_O, "The FlowEvent class that items are built as."},
    {"concat", concat, METH_O, "One Events holding the rows of a list of Events, in order."},
    {"count_tuples", count_tuples, METH_VARARGS, "Tuples in a plain flowTuples array cut from ASCII text, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "forwarder._core", "The compiled core of nsg-forwarder.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__core(void) {
    static int key_made;
    if (!key_made) {
        if (pthread_key_create(&scratch_key, free_scratch)) {
            PyErr_SetString(PyExc_OSError, "pthread_key_create failed");
            return NULL;
        }
        key_made = 1;
    }
    nf_init();
    if (PyType_Ready(&EventsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Events", (PyObject *)&EventsType) < 0 || nf_add_reduce_types(m) < 0 ||
        PyModule_AddIntConstant(m, "NSG1", NF_NSG1) || PyModule_AddIntConstant(m, "NSG2", NF_NSG2) ||
        PyModule_AddIntConstant(m, "VNET4", NF_VNET4) || PyModule_AddIntConstant(m, "ECS", NF_ECS) ||
        PyModule_AddIntConstant(m, "CEF", NF_CEF) || PyModule_AddIntConstant(m, "OCSF", NF_OCSF) ||
        PyModule_AddIntConstant(m, "ASIM", NF_ASIM)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
