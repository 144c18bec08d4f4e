/* forwarder._core's Filter and Aggregator: the CPython face of reduce.c.
 *
 * Filter(rules, ninclude) holds a filter's rule tables; apply(events, ctx_ok, python_reasons) judges every row
 * of a compiled Events and returns an Events of the kept rows with the dropped counts by reason.
 * Aggregator(fields, seed) sums flows per key for one window; add(events, group_ids, python_ids) and
 * add_events(list, ids) feed it, results() gives one tuple per key in the order the keys first appeared.
 *
 * Python (forwarder/reduce/compiled.py) builds the tables and decides what depends on a rule group's context;
 * rows the reference parsed (python rows) are judged by the reference filter and read from their FlowEvents
 * here. The loops over rows run without the GIL.
 */
#include "events.h"
#include "reduce.h"

/* -- Filter ---------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD nf_filter f;
    nf_rule *rules;
    PyObject *tables; /* the bytes objects the rules point into (immutable, kept alive here) */
    int any_context;
} FilterObject;

static void Filter_dealloc(FilterObject *self) {
    PyMem_Free(self->rules);
    Py_XDECREF(self->tables);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* bytes of exactly ``size`` bytes (or a multiple of ``unit`` when size is 0), kept alive by self->tables. */
static const uint8_t *table_of(FilterObject *self, PyObject *obj, size_t size, size_t unit, size_t *count,
                               const char *what) {
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected bytes", what);
        return NULL;
    }
    size_t n = (size_t)PyBytes_GET_SIZE(obj);
    if (size ? n != size : n % unit != 0) {
        PyErr_Format(PyExc_ValueError, "%s: %zu bytes is not a table of this kind", what, n);
        return NULL;
    }
    if (PyList_Append(self->tables, obj)) return NULL;
    if (count) *count = unit ? n / unit : 0;
    return (const uint8_t *)PyBytes_AS_STRING(obj);
}

/* (v4 ranges, v6 ranges): bytes of (first, last) pairs in network order, sorted and merged. */
static int addrs_of(FilterObject *self, PyObject *obj, nf_addrs *a, const char *what) {
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
        PyErr_Format(PyExc_TypeError, "%s: expected (IPv4 ranges, IPv6 ranges)", what);
        return -1;
    }
    a->v4 = table_of(self, PyTuple_GET_ITEM(obj, 0), 0, 8, &a->n4, what);
    if (a->v4 == NULL) return -1;
    a->v6 = table_of(self, PyTuple_GET_ITEM(obj, 1), 0, 32, &a->n6, what);
    return a->v6 == NULL ? -1 : 0;
}

/* One rule: (has_context, decisions, directions, states, protocols, src, dst, address, src_port, dst_port, port);
 * 0 or None for a condition the rule does not have. */
static int rule_of(FilterObject *self, PyObject *spec, nf_rule *rule) {
    int has_context;
    unsigned char decisions, directions, states;
    PyObject *protocols, *addrs[3], *ports[3];
    if (!PyTuple_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "a rule is a tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(spec, "pbbbOOOOOOO", &has_context, &decisions, &directions, &states, &protocols, &addrs[0],
                          &addrs[1], &addrs[2], &ports[0], &ports[1], &ports[2]))
        return -1;
    memset(rule, 0, sizeof(*rule));
    rule->has = (has_context ? NF_C_CONTEXT : 0) | (decisions ? NF_C_DECISION : 0) |
                (directions ? NF_C_DIRECTION : 0) | (states ? NF_C_STATE : 0);
    rule->decisions = decisions;
    rule->directions = directions;
    rule->states = states;
    if (protocols != Py_None) {
        const uint8_t *t = table_of(self, protocols, 256, 1, NULL, "protocol");
        if (t == NULL) return -1;
        memcpy(rule->protocols, t, 256);
        rule->has |= NF_C_PROTOCOL;
    }
    nf_addrs *sets[3] = {&rule->src, &rule->dst, &rule->address};
    static const unsigned ADDR_BITS[3] = {NF_C_SRC, NF_C_DST, NF_C_ADDRESS};
    static const char *ADDR_NAMES[3] = {"src", "dst", "address"};
    for (int i = 0; i < 3; i++) {
        if (addrs[i] == Py_None) continue;
        if (addrs_of(self, addrs[i], sets[i], ADDR_NAMES[i])) return -1;
        rule->has |= ADDR_BITS[i];
    }
    const uint8_t **port_tables[3] = {&rule->src_port, &rule->dst_port, &rule->port};
    static const unsigned PORT_BITS[3] = {NF_C_SRC_PORT, NF_C_DST_PORT, NF_C_PORT};
    static const char *PORT_NAMES[3] = {"src_port", "dst_port", "port"};
    for (int i = 0; i < 3; i++) {
        if (ports[i] == Py_None) continue;
        *port_tables[i] = table_of(self, ports[i], 65536, 1, NULL, PORT_NAMES[i]);
        if (*port_tables[i] == NULL) return -1;
        rule->has |= PORT_BITS[i];
    }
    return 0;
}

static PyObject *Filter_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *rules;
    Py_ssize_t ninclude;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Filter() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &rules, &ninclude)) return NULL;
    Py_ssize_t nrules = PyList_GET_SIZE(rules);
    if (ninclude < 0 || ninclude > nrules || nrules > (Py_ssize_t)UINT32_MAX - 2) {
        PyErr_SetString(PyExc_ValueError, "ninclude must be between 0 and the number of rules");
        return NULL;
    }
    FilterObject *self = (FilterObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->tables = PyList_New(0);
    self->rules = PyMem_Calloc((size_t)nrules + 1, sizeof(nf_rule));
    if (self->tables == NULL || self->rules == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < nrules; k++) {
        if (rule_of(self, PyList_GET_ITEM(rules, k), &self->rules[k])) {
            Py_DECREF(self);
            return NULL;
        }
        self->any_context |= (self->rules[k].has & NF_C_CONTEXT) != 0;
    }
    self->f.rules = self->rules;
    self->f.ninclude = (size_t)ninclude;
    self->f.nexclude = (size_t)(nrules - ninclude);
    return (PyObject *)self;
}

/* apply(events, ctx_ok, python_reasons) -> (kept Events, or None when every row is kept; [(reason, count, first
 * row), ...] for every reason that dropped a row). ctx_ok: per rule group of events.contexts() and per rule, 1
 * when the rule's context conditions hold (empty when no rule has any); python_reasons: the reference's reason
 * for each of events.python_rows(). Reasons: 1 not included, 2 + k exclude rule k. */
static PyObject *Filter_apply(FilterObject *self, PyObject *args) {
    EventsObject *ev;
    Py_buffer ok;
    PyObject *pyreasons;
    if (!PyArg_ParseTuple(args, "O!y*O!", &EventsType, &ev, &ok, &PyList_Type, &pyreasons)) return NULL;
    PyObject *result = NULL;
    uint32_t *reason = NULL;
    size_t nreasons = 2 + self->f.nexclude;
    int64_t *counts = NULL; /* per reason: rows, then the first row */
    if (check_readable(ev)) goto done;
    EventsObject *s = storage(ev);
    size_t r0 = first_row(ev), n = rows_of(ev), g0, g1;
    group_range(ev, &g0, &g1);
    size_t nrules = self->f.ninclude + self->f.nexclude;
    if (self->any_context && (size_t)ok.len != (g1 - g0) * nrules) {
        PyErr_SetString(PyExc_ValueError, "ctx_ok: one byte per rule group and rule expected");
        goto done;
    }
    reason = PyMem_Malloc((n + 1) * sizeof(uint32_t));
    counts = PyMem_Calloc(2 * nreasons, sizeof(int64_t));
    if (reason == NULL || counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t k = 0, npy = PyList_GET_SIZE(pyreasons);
    for (size_t i = 0; i < n; i++) {
        if (!(s->cols.flags[r0 + i] & NF_PYTHON)) continue;
        if (k >= npy) break;
        Py_ssize_t why = PyLong_AsSsize_t(PyList_GET_ITEM(pyreasons, k++));
        if (why < 0 || (size_t)why >= nreasons) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "python_reasons: a reason out of range");
            goto done;
        }
        reason[i] = (uint32_t)why;
    }
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) seen += (s->cols.flags[r0 + i] & NF_PYTHON) != 0;
    if (seen != (size_t)npy) {
        PyErr_SetString(PyExc_ValueError, "python_reasons: one reason per python row expected");
        goto done;
    }
    const uint8_t *ctx_ok = self->any_context ? ok.buf : NULL;
    size_t kept = 0;
    Py_BEGIN_ALLOW_THREADS nf_filter_rows(&self->f, &s->cols, r0, n, ctx_ok, (uint32_t)g0, reason);
    for (size_t i = 0; i < n; i++) {
        uint32_t why = reason[i];
        if (why == 0) {
            kept++;
            continue;
        }
        if (counts[2 * why]++ == 0) counts[2 * why + 1] = (int64_t)i;
    }
    Py_END_ALLOW_THREADS PyObject *dropped = PyList_New(0);
    for (size_t why = 1; dropped && why < nreasons; why++) {
        if (counts[2 * why] == 0) continue;
        PyObject *item = Py_BuildValue("(nLL)", (Py_ssize_t)why, (long long)counts[2 * why],
                                       (long long)counts[2 * why + 1]);
        if (item == NULL || PyList_Append(dropped, item)) Py_CLEAR(dropped);
        Py_XDECREF(item);
    }
    if (dropped == NULL) goto done;
    PyObject *selected = kept == n ? Py_NewRef(Py_None) : events_select(ev, reason, kept);
    if (selected == NULL) {
        Py_DECREF(dropped);
        goto done;
    }
    result = Py_BuildValue("(NN)", selected, dropped);
done:
    PyBuffer_Release(&ok);
    PyMem_Free(reason);
    PyMem_Free(counts);
    return result;
}

static PyMethodDef Filter_methods[] = {
    {"apply", (PyCFunction)Filter_apply, METH_VARARGS, "Judge every row: (kept Events or None, dropped counts)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FilterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "forwarder._core.Filter",
    .tp_doc = PyDoc_STR("A tuple filter's rule tables, evaluated over the columns of compiled Events."),
    .tp_basicsize = sizeof(FilterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Filter_new,
    .tp_dealloc = (destructor)Filter_dealloc,
    .tp_methods = Filter_methods,
};

/* -- Aggregator ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD nf_agg agg;
    PyObject **ctx; /* the context of each key's first flow */
    size_t ctx_cap;
    int busy;
} AggregatorObject;

static void Aggregator_dealloc(AggregatorObject *self) {
    for (size_t i = 0; i < self->agg.n && i < self->ctx_cap; i++) Py_XDECREF(self->ctx[i]);
    PyMem_Free(self->ctx);
    nf_agg_free(&self->agg);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Aggregator_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned int fields;
    Py_buffer seed;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Aggregator() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Iy*", &fields, &seed)) return NULL;
    if (seed.len != 16 || fields == 0 || (fields & ~NF_K_ALL)) {
        PyBuffer_Release(&seed);
        PyErr_SetString(PyExc_ValueError, "Aggregator(fields, seed): key fields 1-1023 and a 16-byte seed");
        return NULL;
    }
    AggregatorObject *self = (AggregatorObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->agg.fields = fields;
        memcpy(&self->agg.k0, seed.buf, 8);
        memcpy(&self->agg.k1, (const char *)seed.buf + 8, 8);
    }
    PyBuffer_Release(&seed);
    return (PyObject *)self;
}

/* A flow the reference parsed, read from its FlowEvent with the GIL: its key in ``keys`` and its values. */
typedef struct {
    size_t key_off, key_len;
    int64_t ts_ms, counters[4];
    unsigned present;
    char state;
    uint8_t allowed;
    PyObject *ctx; /* borrowed from the event, alive for the call */
} py_flow;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes_buf;

static int buf_room(bytes_buf *b, size_t more) {
    if (more > SIZE_MAX / 4 - b->n) return -1;
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int small_int(PyObject *obj, long max, long *out, const char *what) {
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v > max) {
        PyErr_Format(PyExc_ValueError, "%s %ld out of range", what, v);
        return -1;
    }
    *out = v;
    return 0;
}

/* The text of an address as the key holds it: UTF-8, lone surrogates kept (the reference keys on the str). */
static PyObject *address_bytes(PyObject *s) {
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "an event's address is not a str");
        return NULL;
    }
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (b && (size_t)PyBytes_GET_SIZE(b) > NF_KEY_MAX_ADDR) {
        PyErr_SetString(PyExc_ValueError, "an address too long for an aggregation key");
        Py_CLEAR(b);
    }
    return b;
}

static int py_flow_of(unsigned fields, PyObject *e, uint32_t ctx_id, py_flow *f, bytes_buf *keys) {
    if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 16) {
        PyErr_SetString(PyExc_TypeError, "expected FlowEvents");
        return -1;
    }
    PyObject *src = NULL, *dst = NULL;
    long sport, dport, proto;
    int ret = -1;
    f->ctx = PyTuple_GET_ITEM(e, 0);
    f->ts_ms = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 2));
    if (f->ts_ms == -1 && PyErr_Occurred()) return -1;
    if ((src = address_bytes(PyTuple_GET_ITEM(e, 3))) == NULL || (dst = address_bytes(PyTuple_GET_ITEM(e, 4))) == NULL)
        goto done;
    if (small_int(PyTuple_GET_ITEM(e, 5), 65535, &sport, "source port") ||
        small_int(PyTuple_GET_ITEM(e, 6), 65535, &dport, "destination port") ||
        small_int(PyTuple_GET_ITEM(e, 7), 255, &proto, "protocol"))
        goto done;
    int inbound = PyObject_IsTrue(PyTuple_GET_ITEM(e, 8)), allowed = PyObject_IsTrue(PyTuple_GET_ITEM(e, 9));
    if (inbound < 0 || allowed < 0) goto done;
    PyObject *state = PyTuple_GET_ITEM(e, 10);
    if (!PyUnicode_Check(state)) {
        PyErr_SetString(PyExc_TypeError, "an event's flow state is not a str");
        goto done;
    }
    /* Only B, C and E are counted: anything else is "not B" (its counters summed), as in the reference. */
    Py_UCS4 ch = PyUnicode_GET_LENGTH(state) == 1 ? PyUnicode_READ_CHAR(state, 0) : 0;
    f->state = ch == 'B' || ch == 'C' || ch == 'E' ? (char)ch : 0;
    f->allowed = (uint8_t)allowed;
    f->present = 0;
    for (int k = 0; k < 4; k++) {
        PyObject *v = PyTuple_GET_ITEM(e, 12 + k);
        f->counters[k] = 0;
        if (v == Py_None) continue;
        f->counters[k] = PyLong_AsLongLong(v);
        if (f->counters[k] == -1 && PyErr_Occurred()) goto done;
        if (f->counters[k] < 0) {
            PyErr_SetString(PyExc_ValueError, "a negative flow counter");
            goto done;
        }
        f->present |= 1u << k;
    }
    nf_key k = {ctx_id,
                PyBytes_AS_STRING(src),
                PyBytes_AS_STRING(dst),
                (size_t)PyBytes_GET_SIZE(src),
                (size_t)PyBytes_GET_SIZE(dst),
                (uint16_t)sport,
                (uint16_t)dport,
                (uint8_t)proto,
                (uint8_t)inbound,
                (uint8_t)allowed};
    if (buf_room(keys, nf_key_size(fields, k.src_len, k.dst_len))) {
        PyErr_NoMemory();
        goto done;
    }
    f->key_off = keys->n;
    f->key_len = nf_key_encode(fields, &k, keys->p + keys->n);
    keys->n += f->key_len;
    ret = 0;
done:
    Py_XDECREF(src);
    Py_XDECREF(dst);
    return ret;
}

static int uint32s(PyObject *list, size_t want, uint32_t *out, const char *what) {
    if ((size_t)PyList_GET_SIZE(list) != want) {
        PyErr_Format(PyExc_ValueError, "%s: %zu ids expected", what, want);
        return -1;
    }
    for (size_t i = 0; i < want; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PyList_GET_ITEM(list, (Py_ssize_t)i));
        if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
        if (v > UINT32_MAX) {
            PyErr_Format(PyExc_ValueError, "%s: an id beyond 32 bits", what);
            return -1;
        }
        out[i] = (uint32_t)v;
    }
    return 0;
}

/* Origins of new keys (nf_acc.origin): a row of the Events (even), or a python flow (odd). */
#define FROM_ROW(r) ((r) << 1)
#define FROM_FLOW(k) ((k) << 1 | 1u)

/* The rows [r0, r0 + n) of ``s`` (NULL: none) and the python flows, in row order: a python row of the
 * Events takes the next python flow; without Events the python flows are the input. */
static PyObject *accumulate(AggregatorObject *self, EventsObject *s, size_t r0, size_t n, size_t g0,
                            const uint32_t *group_ids, const py_flow *flows, size_t nflows, const bytes_buf *keys) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this aggregator is being added to by another thread");
        return NULL;
    }
    size_t before = self->agg.n;
    int failed = 0;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS size_t k = 0;
    size_t total = s ? n : nflows;
    for (size_t i = 0; i < total && !failed; i++) {
        int created;
        nf_acc *acc;
        if (s && !(s->cols.flags[r0 + i] & NF_PYTHON)) {
            size_t r = r0 + i;
            uint32_t id = group_ids ? group_ids[s->cols.group[r] - g0] : 0;
            failed = nf_agg_add_row(&self->agg, &s->cols, r, id, &created, &acc);
            if (!failed && created) acc->origin = FROM_ROW(r);
            continue;
        }
        const py_flow *f = &flows[k];
        acc = nf_agg_find(&self->agg, keys->p + f->key_off, f->key_len, f->ts_ms, &created);
        if (acc == NULL) {
            failed = 1;
            continue;
        }
        if (created) acc->origin = FROM_FLOW(k);
        nf_acc_count(acc, f->ts_ms, f->state, f->allowed, f->counters, f->present);
        k++;
    }
    Py_END_ALLOW_THREADS self->busy = 0;
    /* The contexts of the new keys' first flows, also when out of memory stopped the loop half-way. */
    if (self->agg.n > self->ctx_cap) {
        size_t cap = self->agg.cap;
        PyObject **ctx = PyMem_Realloc(self->ctx, cap * sizeof(PyObject *));
        if (ctx == NULL) return PyErr_NoMemory(); /* the new keys' contexts stay unknown: results() says so */
        memset(ctx + self->ctx_cap, 0, (cap - self->ctx_cap) * sizeof(PyObject *));
        self->ctx = ctx;
        self->ctx_cap = cap;
    }
    for (size_t i = before; i < self->agg.n; i++) {
        size_t origin = self->agg.acc[i].origin;
        PyObject *ctx = origin & 1u ? flows[origin >> 1].ctx : s->groups[s->cols.group[origin >> 1]].ctx;
        self->ctx[i] = Py_NewRef(ctx);
    }
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* add(events, group_ids, python_ids): every row of a compiled Events. group_ids: the id of the context part of
 * the key (rule, resource, MAC) for each of events.contexts(), python_ids the same for each python row; both
 * empty when the key has none of them. */
static PyObject *Aggregator_add(AggregatorObject *self, PyObject *args) {
    EventsObject *ev;
    PyObject *gids, *pids;
    if (!PyArg_ParseTuple(args, "O!O!O!", &EventsType, &ev, &PyList_Type, &gids, &PyList_Type, &pids)) return NULL;
    if (check_readable(ev)) return NULL;
    EventsObject *s = storage(ev);
    size_t r0 = first_row(ev), n = rows_of(ev), g0, g1, npy = 0;
    group_range(ev, &g0, &g1);
    for (size_t i = 0; i < n; i++) npy += (s->cols.flags[r0 + i] & NF_PYTHON) != 0;
    int with_ctx = (self->agg.fields & NF_K_CONTEXT) != 0;
    uint32_t *group_ids = PyMem_Malloc((g1 - g0 + 1) * sizeof(uint32_t)), *py_ids = PyMem_Malloc((npy + 1) * 4);
    py_flow *flows = PyMem_Malloc((npy + 1) * sizeof(py_flow));
    bytes_buf keys = {0};
    PyObject *result = NULL;
    if (group_ids == NULL || py_ids == NULL || flows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (with_ctx && (uint32s(gids, g1 - g0, group_ids, "group_ids") || uint32s(pids, npy, py_ids, "python_ids")))
        goto done;
    for (size_t i = 0, k = 0; i < n; i++) {
        size_t r = r0 + i;
        if (!(s->cols.flags[r] & NF_PYTHON)) continue;
        PyObject *e = s->py ? s->py[r] : NULL;
        if (e == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "a tuple left to the reference was never resolved");
            goto done;
        }
        if (py_flow_of(self->agg.fields, e, with_ctx ? py_ids[k] : 0, &flows[k], &keys)) goto done;
        k++;
    }
    result = accumulate(self, s, r0, n, g0, with_ctx ? group_ids : NULL, flows, npy, &keys);
done:
    PyMem_Free(group_ids);
    PyMem_Free(py_ids);
    PyMem_Free(flows);
    free(keys.p);
    return result;
}

/* add_events(events, ids): FlowEvents of a list (the reference's batches); ids as python_ids of add. */
static PyObject *Aggregator_add_events(AggregatorObject *self, PyObject *args) {
    PyObject *events, *ids;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &events, &PyList_Type, &ids)) return NULL;
    /* Our own list: the items stay alive while the GIL is released, whatever happens to the caller's. */
    events = PyList_GetSlice(events, 0, PyList_GET_SIZE(events));
    if (events == NULL) return NULL;
    size_t n = (size_t)PyList_GET_SIZE(events);
    int with_ctx = (self->agg.fields & NF_K_CONTEXT) != 0;
    uint32_t *py_ids = PyMem_Malloc((n + 1) * sizeof(uint32_t));
    py_flow *flows = PyMem_Malloc((n + 1) * sizeof(py_flow));
    bytes_buf keys = {0};
    PyObject *result = NULL;
    if (py_ids == NULL || flows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (with_ctx && uint32s(ids, n, py_ids, "ids")) goto done;
    for (size_t i = 0; i < n; i++)
        if (py_flow_of(self->agg.fields, PyList_GET_ITEM(events, (Py_ssize_t)i), with_ctx ? py_ids[i] : 0, &flows[i],
                       &keys))
            goto done;
    result = accumulate(self, NULL, 0, 0, 0, NULL, flows, n, &keys);
done:
    Py_DECREF(events);
    PyMem_Free(py_ids);
    PyMem_Free(flows);
    free(keys.p);
    return result;
}

static PyObject *sum_of(const nf_acc *acc, int k) {
    if (!(acc->summed & (1u << k))) Py_RETURN_NONE;
    nf_u128 v = acc->sum[k];
    if ((v >> 64) == 0) return PyLong_FromUnsignedLongLong((unsigned long long)v);
    PyObject *hi = PyLong_FromUnsignedLongLong((unsigned long long)(v >> 64));
    PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)v), *shift = PyLong_FromLong(64);
    PyObject *high = hi && shift ? PyNumber_Lshift(hi, shift) : NULL;
    PyObject *out = high && lo ? PyNumber_Or(high, lo) : NULL;
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(shift);
    Py_XDECREF(high);
    return out;
}

static PyObject *opt_text(unsigned fields, unsigned bit, const char *p, size_t n) {
    if (!(fields & bit)) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogatepass");
}

static PyObject *opt_int(unsigned fields, unsigned bit, long v) {
    if (!(fields & bit)) Py_RETURN_NONE;
    return PyLong_FromLong(v);
}

static PyObject *opt_bool(unsigned fields, unsigned bit, int v) {
    if (!(fields & bit)) Py_RETURN_NONE;
    return PyBool_FromLong(v);
}

/* results() -> [(ctx, src_ip, dst_ip, src_port, dst_port, protocol, inbound, allowed, first_ms, last_ms, flows,
 * started, continuing, ended, denied, packets_s2d, bytes_s2d, packets_d2s, bytes_d2s), ...] in the order the
 * keys first appeared; fields outside the key are None, and so are counters never summed. */
static PyObject *Aggregator_results(AggregatorObject *self, PyObject *unused) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this aggregator is being added to by another thread");
        return NULL;
    }
    unsigned fields = self->agg.fields;
    PyObject *out = PyList_New((Py_ssize_t)self->agg.n);
    for (size_t i = 0; out && i < self->agg.n; i++) {
        const nf_acc *acc = &self->agg.acc[i];
        nf_key k;
        if (i >= self->ctx_cap || self->ctx[i] == NULL ||
            !nf_key_decode(fields, self->agg.keys + acc->key_off, acc->key_len, &k)) {
            PyErr_SetString(PyExc_RuntimeError, "an aggregation left incomplete by an earlier error");
            Py_CLEAR(out);
            break;
        }
        PyObject *items[19] = {
            Py_NewRef(self->ctx[i]),
            opt_text(fields, NF_K_SRC_IP, k.src, k.src_len),
            opt_text(fields, NF_K_DST_IP, k.dst, k.dst_len),
            opt_int(fields, NF_K_SRC_PORT, k.sport),
            opt_int(fields, NF_K_DST_PORT, k.dport),
            opt_int(fields, NF_K_PROTOCOL, k.proto),
            opt_bool(fields, NF_K_DIRECTION, k.inbound),
            opt_bool(fields, NF_K_DECISION, k.allowed),
            PyLong_FromLongLong(acc->first_ms),
            PyLong_FromLongLong(acc->last_ms),
            PyLong_FromLongLong(acc->flows),
            PyLong_FromLongLong(acc->started),
            PyLong_FromLongLong(acc->continuing),
            PyLong_FromLongLong(acc->ended),
            PyLong_FromLongLong(acc->denied),
            sum_of(acc, 0),
            sum_of(acc, 1),
            sum_of(acc, 2),
            sum_of(acc, 3),
        };
        PyObject *row = PyTuple_New(19);
        for (int j = 0; j < 19; j++) {
            if (items[j] == NULL || row == NULL) {
                for (int m = 0; m < 19; m++) Py_XDECREF(items[m]);
                Py_CLEAR(row);
                break;
            }
        }
        if (row == NULL) {
            Py_CLEAR(out);
            break;
        }
        for (int j = 0; j < 19; j++) PyTuple_SET_ITEM(row, j, items[j]);
        PyList_SET_ITEM(out, (Py_ssize_t)i, row);
    }
    return out;
}

static Py_ssize_t Aggregator_length(AggregatorObject *self) { return (Py_ssize_t)self->agg.n; }

static PyMethodDef Aggregator_methods[] = {
    {"add", (PyCFunction)Aggregator_add, METH_VARARGS, "Add every row of compiled Events."},
    {"add_events", (PyCFunction)Aggregator_add_events, METH_VARARGS, "Add a list of FlowEvents."},
    {"results", (PyCFunction)Aggregator_results, METH_NOARGS, "One tuple per key, in order of first appearance."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Aggregator_as_sequence = {.sq_length = (lenfunc)Aggregator_length};

static PyTypeObject AggregatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "forwarder._core.Aggregator",
    .tp_doc = PyDoc_STR("Flows summed per key for one window of one blob."),
    .tp_basicsize = sizeof(AggregatorObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Aggregator_new,
    .tp_dealloc = (destructor)Aggregator_dealloc,
    .tp_as_sequence = &Aggregator_as_sequence,
    .tp_methods = Aggregator_methods,
};

int nf_add_reduce_types(PyObject *module) {
    if (PyType_Ready(&FilterType) < 0 || PyType_Ready(&AggregatorType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "Filter", (PyObject *)&FilterType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "Aggregator", (PyObject *)&AggregatorType) < 0) return -1;
    return 0;
}
