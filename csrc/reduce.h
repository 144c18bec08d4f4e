/* Reduction in the compiled core: filter rules evaluated over the columns, and flows summed per key and window.
 *
 * Plain C over nf_cols (no Python here), so that the loops run without the GIL and the fuzzer drives them. The
 * reference is forwarder/reduce/filters.py and aggregate.py. What depends only on a rule group's context (rule
 * and resource globs, the NIC's MAC; the rule, resource and MAC of an aggregation key) is decided there, once
 * per rule group, and handed in: a verdict per group and rule, an id per group.
 */
#ifndef NF_REDUCE_H
#define NF_REDUCE_H

#include "flow.h"

/* -- Filters ------------------------------------------------------------------------------------------- */

/* An address set as forwarder/reduce/addresses.py keeps it: sorted, merged, inclusive ranges per family,
 * each range its first and last address in network order (so that memcmp order is numeric order). */
typedef struct {
    const uint8_t *v4; /* n4 ranges of 2 x 4 bytes */
    size_t n4;
    const uint8_t *v6; /* n6 ranges of 2 x 16 bytes */
    size_t n6;
} nf_addrs;

int nf_addrs_has(const nf_addrs *a, const uint8_t *bin, int v6);

/* Conditions of a rule (nf_rule.has) */
#define NF_C_DECISION 1u
#define NF_C_DIRECTION 2u
#define NF_C_STATE 4u
#define NF_C_PROTOCOL 8u
#define NF_C_SRC 16u
#define NF_C_DST 32u
#define NF_C_ADDRESS 64u
#define NF_C_SRC_PORT 128u
#define NF_C_DST_PORT 256u
#define NF_C_PORT 512u
#define NF_C_CONTEXT 1024u /* rule, resource or mac: decided per rule group by the caller */

/* Flow states as bits of nf_rule.states; a tuple without a state (NSG version 1) matches none. */
#define NF_S_BEGIN 1u
#define NF_S_CONTINUING 2u
#define NF_S_END 4u
#define NF_S_DENIED 8u

typedef struct {
    unsigned has;
    uint8_t decisions;  /* bit 0: denied matches, bit 1: allowed matches */
    uint8_t directions; /* bit 0: outbound, bit 1: inbound */
    uint8_t states;
    uint8_t protocols[256];
    nf_addrs src, dst, address;
    const uint8_t *src_port, *dst_port, *port; /* 65,536 entries each, nonzero: matches */
} nf_rule;

/* A tuple is kept when it matches one of the include rules (or there are none) and none of the excludes. */
typedef struct {
    const nf_rule *rules; /* the include rules, then the exclude rules */
    size_t ninclude, nexclude;
} nf_filter;

/* Why each row of c[r0, r0 + n) is dropped: reason[i] = 0 to keep it, 1 not included, 2 + k excluded by
 * exclude rule k. ctx_ok[(group - g0) * nrules + k] is 1 when rule k's context conditions hold for the
 * group (NULL when no rule has any). Rows of the reference (NF_PYTHON) are left alone: the caller has its
 * reasons from the reference. */
void nf_filter_rows(const nf_filter *f, const nf_cols *c, size_t r0, size_t n, const uint8_t *ctx_ok, uint32_t g0,
                    uint32_t *reason);

/* -- Aggregation ---------------------------------------------------------------------------------------- */

/* Fields of an aggregation key (nf_agg.fields), in the order of aggregate.py's KEY_FIELDS */
#define NF_K_SRC_IP 1u
#define NF_K_DST_IP 2u
#define NF_K_SRC_PORT 4u
#define NF_K_DST_PORT 8u
#define NF_K_PROTOCOL 16u
#define NF_K_DIRECTION 32u
#define NF_K_DECISION 64u
#define NF_K_CONTEXT 896u /* rule, resource, mac: one id per distinct combination, given by the caller */
#define NF_K_ALL 1023u

/* A key as bytes: what the key's fields are, each written only when it is part of the key. Addresses are
 * their text as written (the reference keys on the text: two spellings of one address are two keys). */
typedef struct {
    uint32_t ctx_id;
    const char *src, *dst;
    size_t src_len, dst_len;
    uint16_t sport, dport;
    uint8_t proto, inbound, allowed;
} nf_key;

#define NF_KEY_MAX_ADDR 65535u /* per address; the reference only keys valid addresses (45 characters at most) */
size_t nf_key_size(unsigned fields, size_t src_len, size_t dst_len); /* room nf_key_encode needs */
size_t nf_key_encode(unsigned fields, const nf_key *k, uint8_t *out);
/* The fields of an encoded key back (those not in the key are zero); 0 when the bytes are not a key. */
int nf_key_decode(unsigned fields, const uint8_t *p, size_t n, nf_key *k);

__extension__ typedef unsigned __int128 nf_u128; /* counter sums: 10^18 a tuple never overflows it */

typedef struct {
    uint64_t hash;
    size_t key_off, key_len;
    size_t origin; /* the caller's note of where the key's first flow came from */
    int64_t first_ms, last_ms;
    int64_t flows, started, continuing, ended, denied;
    nf_u128 sum[4]; /* packets s2d, bytes s2d, packets d2s, bytes d2s */
    unsigned summed; /* bit k: sum[k] has had a value added (the reference's None otherwise) */
} nf_acc;

typedef struct {
    unsigned fields;
    uint64_t k0, k1; /* SipHash key: a random one per aggregation, so that no input can be made to collide */
    nf_acc *acc;     /* in the order the keys first appeared */
    size_t n, cap;
    uint8_t *keys;
    size_t keys_len, keys_cap;
    uint32_t *slots; /* open addressing: acc index + 1, 0 empty */
    size_t nslots;
} nf_agg;

/* The accumulator of a key, added (first flow time ts_ms, *created = 1) when it is new; NULL when out of memory. */
nf_acc *nf_agg_find(nf_agg *a, const uint8_t *key, size_t len, int64_t ts_ms, int *created);
/* One flow into an accumulator, as WindowAggregator.add counts it. present: bit k when counters[k] has a value. */
void nf_acc_count(nf_acc *acc, int64_t ts_ms, char state, int allowed, const int64_t counters[4], unsigned present);
/* One row of the columns into the aggregation; -1 when out of memory. */
int nf_agg_add_row(nf_agg *a, const nf_cols *c, size_t r, uint32_t ctx_id, int *created, nf_acc **acc);
void nf_agg_free(nf_agg *a);

uint64_t nf_siphash13(uint64_t k0, uint64_t k1, const uint8_t *p, size_t n);

#endif
