/* Filters and aggregation over the columns: the work of forwarder/reduce/filters.py (TupleFilter.reason) and
 * aggregate.py (WindowAggregator.add) for the rows the compiled parser read. See reduce.h. */
#include "reduce.h"

#include <stdlib.h>
#include <string.h>

/* -- Filters ------------------------------------------------------------------------------------------- */

/* Whether x is in one of n sorted, disjoint ranges of w-byte (first, last) pairs: the last range starting at or
 * before x, then its end (AddressSet.__contains__'s bisect). */
static inline int in_ranges(const uint8_t *ranges, size_t n, size_t w, const uint8_t *x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(ranges + mid * 2 * w, x, w) <= 0) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && memcmp(x, ranges + (lo - 1) * 2 * w + w, w) <= 0;
}

int nf_addrs_has(const nf_addrs *a, const uint8_t *bin, int v6) {
    return v6 ? in_ranges(a->v6, a->n6, 16, bin) : in_ranges(a->v4, a->n4, 4, bin);
}

static inline unsigned state_bit(char state) {
    switch (state) {
    case 'B': return NF_S_BEGIN;
    case 'C': return NF_S_CONTINUING;
    case 'E': return NF_S_END;
    case 'D': return NF_S_DENIED;
    default: return 0;
    }
}

/* Every condition of the rule but the context ones (the caller's verdict), on row r. */
static inline int matches(const nf_rule *rule, const nf_cols *c, size_t r) {
    unsigned has = rule->has;
    unsigned flags = c->flags[r];
    if (has & NF_C_DECISION && !(rule->decisions & (flags & NF_ALLOWED ? 2u : 1u))) return 0;
    if (has & NF_C_DIRECTION && !(rule->directions & (flags & NF_INBOUND ? 2u : 1u))) return 0;
    if (has & NF_C_STATE && !(rule->states & state_bit(c->state[r]))) return 0;
    if (has & NF_C_PROTOCOL && !rule->protocols[c->proto[r]]) return 0;
    if (has & NF_C_SRC_PORT && !rule->src_port[c->sport[r]]) return 0;
    if (has & NF_C_DST_PORT && !rule->dst_port[c->dport[r]]) return 0;
    if (has & NF_C_PORT && !rule->port[c->sport[r]] && !rule->port[c->dport[r]]) return 0;
    int v6 = (flags & NF_V6) != 0;
    if (has & NF_C_SRC && !nf_addrs_has(&rule->src, c->src_bin[r], v6)) return 0;
    if (has & NF_C_DST && !nf_addrs_has(&rule->dst, c->dst_bin[r], v6)) return 0;
    if (has & NF_C_ADDRESS && !nf_addrs_has(&rule->address, c->src_bin[r], v6) &&
        !nf_addrs_has(&rule->address, c->dst_bin[r], v6))
        return 0;
    return 1;
}

void nf_filter_rows(const nf_filter *f, const nf_cols *c, size_t r0, size_t n, const uint8_t *ctx_ok, uint32_t g0,
                    uint32_t *reason) {
    size_t nrules = f->ninclude + f->nexclude;
    for (size_t i = 0; i < n; i++) {
        size_t r = r0 + i;
        if (c->flags[r] & NF_PYTHON) continue;
        const uint8_t *ok = ctx_ok ? ctx_ok + (size_t)(c->group[r] - g0) * nrules : NULL;
        uint32_t why = 0;
        if (f->ninclude) {
            why = 1;
            for (size_t k = 0; k < f->ninclude; k++) {
                const nf_rule *rule = &f->rules[k];
                if ((!(rule->has & NF_C_CONTEXT) || ok[k]) && matches(rule, c, r)) {
                    why = 0;
                    break;
                }
            }
        }
        for (size_t k = 0; why == 0 && k < f->nexclude; k++) {
            const nf_rule *rule = &f->rules[f->ninclude + k];
            if ((!(rule->has & NF_C_CONTEXT) || ok[f->ninclude + k]) && matches(rule, c, r)) why = (uint32_t)(2 + k);
        }
        reason[i] = why;
    }
}

/* -- Aggregation ---------------------------------------------------------------------------------------- */

static inline void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline unsigned get16(const uint8_t *p) { return p[0] | (unsigned)p[1] << 8; }

size_t nf_key_size(unsigned fields, size_t src_len, size_t dst_len) {
    return 4 + 2 + src_len + 2 + dst_len + 2 + 2 + 3;
}

size_t nf_key_encode(unsigned fields, const nf_key *k, uint8_t *out) {
    uint8_t *o = out;
    if (fields & NF_K_CONTEXT) {
        memcpy(o, &k->ctx_id, 4);
        o += 4;
    }
    if (fields & NF_K_SRC_IP) {
        put16(o, (unsigned)k->src_len);
        memcpy(o + 2, k->src, k->src_len);
        o += 2 + k->src_len;
    }
    if (fields & NF_K_DST_IP) {
        put16(o, (unsigned)k->dst_len);
        memcpy(o + 2, k->dst, k->dst_len);
        o += 2 + k->dst_len;
    }
    if (fields & NF_K_SRC_PORT) {
        put16(o, k->sport);
        o += 2;
    }
    if (fields & NF_K_DST_PORT) {
        put16(o, k->dport);
        o += 2;
    }
    if (fields & NF_K_PROTOCOL) *o++ = k->proto;
    if (fields & NF_K_DIRECTION) *o++ = k->inbound;
    if (fields & NF_K_DECISION) *o++ = k->allowed;
    return (size_t)(o - out);
}

int nf_key_decode(unsigned fields, const uint8_t *p, size_t n, nf_key *k) {
    const uint8_t *end = p + n;
    memset(k, 0, sizeof(*k));
#define NEED(m)                               \
    do {                                      \
        if ((size_t)(end - p) < (m)) return 0; \
    } while (0)
    if (fields & NF_K_CONTEXT) {
        NEED(4);
        memcpy(&k->ctx_id, p, 4);
        p += 4;
    }
    if (fields & NF_K_SRC_IP) {
        NEED(2);
        k->src_len = get16(p);
        NEED(2 + k->src_len);
        k->src = (const char *)p + 2;
        p += 2 + k->src_len;
    }
    if (fields & NF_K_DST_IP) {
        NEED(2);
        k->dst_len = get16(p);
        NEED(2 + k->dst_len);
        k->dst = (const char *)p + 2;
        p += 2 + k->dst_len;
    }
    if (fields & NF_K_SRC_PORT) {
        NEED(2);
        k->sport = (uint16_t)get16(p);
        p += 2;
    }
    if (fields & NF_K_DST_PORT) {
        NEED(2);
        k->dport = (uint16_t)get16(p);
        p += 2;
    }
    if (fields & NF_K_PROTOCOL) {
        NEED(1);
        k->proto = *p++;
    }
    if (fields & NF_K_DIRECTION) {
        NEED(1);
        k->inbound = *p++;
    }
    if (fields & NF_K_DECISION) {
        NEED(1);
        k->allowed = *p++;
    }
#undef NEED
    return p == end;
}

/* SipHash-1-3 (Aumasson and Bernstein; the variant CPython hashes str with), keyed per aggregation. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                        \
    do {                                                                                                \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                       \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                          \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                          \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                       \
    } while (0)

uint64_t nf_siphash13(uint64_t k0, uint64_t k1, const uint8_t *p, size_t n) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)n << 56;
    size_t whole = n - n % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = 0;
        for (int j = 7; j >= 0; j--) m = m << 8 | p[i + (size_t)j]; /* little-endian, whatever the CPU */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = n % 8; j-- > 0;) b |= (uint64_t)p[whole + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static int rehash(nf_agg *a, size_t nslots) {
    uint32_t *slots = calloc(nslots, sizeof(uint32_t));
    if (slots == NULL) return -1;
    for (size_t i = 0; i < a->n; i++) {
        size_t s = (size_t)a->acc[i].hash & (nslots - 1);
        while (slots[s]) s = (s + 1) & (nslots - 1);
        slots[s] = (uint32_t)(i + 1);
    }
    free(a->slots);
    a->slots = slots;
    a->nslots = nslots;
    return 0;
}

nf_acc *nf_agg_find(nf_agg *a, const uint8_t *key, size_t len, int64_t ts_ms, int *created) {
    uint64_t h = nf_siphash13(a->k0, a->k1, key, len);
    *created = 0;
    if (a->nslots) {
        for (size_t s = (size_t)h & (a->nslots - 1);; s = (s + 1) & (a->nslots - 1)) {
            uint32_t at = a->slots[s];
            if (at == 0) break;
            nf_acc *acc = &a->acc[at - 1];
            if (acc->hash == h && acc->key_len == len && memcmp(a->keys + acc->key_off, key, len) == 0) return acc;
        }
    }
    /* A new key: room for it (at most half the slots used), its bytes and its accumulator. */
    if (a->n >= UINT32_MAX - 1) return NULL;
    if (2 * (a->n + 1) > a->nslots && rehash(a, a->nslots ? 2 * a->nslots : 1024)) return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        nf_acc *acc = realloc(a->acc, cap * sizeof(nf_acc));
        if (acc == NULL) return NULL;
        a->acc = acc;
        a->cap = cap;
    }
    if (len > SIZE_MAX / 4 - a->keys_len) return NULL;
    if (a->keys_len + len > a->keys_cap) {
        size_t cap = a->keys_cap ? a->keys_cap : 16384;
        while (cap < a->keys_len + len) cap *= 2;
        uint8_t *keys = realloc(a->keys, cap);
        if (keys == NULL) return NULL;
        a->keys = keys;
        a->keys_cap = cap;
    }
    nf_acc *acc = &a->acc[a->n];
    memset(acc, 0, sizeof(*acc));
    acc->hash = h;
    acc->key_off = a->keys_len;
    acc->key_len = len;
    acc->first_ms = acc->last_ms = ts_ms;
    memcpy(a->keys + a->keys_len, key, len);
    a->keys_len += len;
    size_t s = (size_t)h & (a->nslots - 1);
    while (a->slots[s]) s = (s + 1) & (a->nslots - 1);
    a->slots[s] = (uint32_t)(++a->n);
    *created = 1;
    return acc;
}

void nf_acc_count(nf_acc *acc, int64_t ts_ms, char state, int allowed, const int64_t counters[4], unsigned present) {
    if (ts_ms < acc->first_ms) acc->first_ms = ts_ms;
    if (ts_ms > acc->last_ms) acc->last_ms = ts_ms;
    acc->flows++;
    acc->started += state == 'B';
    acc->continuing += state == 'C';
    acc->ended += state == 'E';
    acc->denied += !allowed;
    if (state == 'B') return; /* a B tuple's counters are empty; C and E carry deltas since the previous tuple */
    for (int k = 0; k < 4; k++) {
        if (present & (1u << k)) acc->sum[k] += (nf_u128)(uint64_t)counters[k];
    }
    acc->summed |= present;
}

int nf_agg_add_row(nf_agg *a, const nf_cols *c, size_t r, uint32_t ctx_id, int *created, nf_acc **out) {
    uint8_t key[4 + 2 + 39 + 2 + 39 + 2 + 2 + 3]; /* the parser keeps addresses of at most 39 characters */
    unsigned flags = c->flags[r];
    nf_key k = {ctx_id,
                c->text + c->src_off[r],
                c->text + c->dst_off[r],
                c->src_len[r],
                c->dst_len[r],
                c->sport[r],
                c->dport[r],
                c->proto[r],
                (flags & NF_INBOUND) != 0,
                (flags & NF_ALLOWED) != 0};
    size_t len = nf_key_encode(a->fields, &k, key);
    nf_acc *acc = nf_agg_find(a, key, len, c->ts_ms[r], created);
    if (acc == NULL) return -1;
    nf_acc_count(acc, c->ts_ms[r], c->state[r], k.allowed, c->counters[r], flags & NF_COUNTERS ? 15u : 0u);
    *out = acc;
    return 0;
}

void nf_agg_free(nf_agg *a) {
    free(a->acc);
    free(a->keys);
    free(a->slots);
    a->acc = NULL;
    a->keys = NULL;
    a->slots = NULL;
    a->n = a->cap = a->keys_len = a->keys_cap = a->nslots = 0;
}
