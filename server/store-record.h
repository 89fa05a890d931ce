/* store-record.h: the byte layouts of the store's records and keys -- pure
 * encoders and decoders with no LMDB (and no libuv), so that store.c keeps
 * only the transactions and the fuzzer and tests reach the layouts
 * directly.
 *
 * Records are little-endian (store.c refuses to build elsewhere). Each
 * starts with a magic word naming its kind and layout version; each but
 * the meta record carries at bytes 8..16 an XXH3-64 of its key, its first
 * 8 bytes and everything after the checksum, so a record copied under
 * another key or damaged anywhere fails to decode.
 *
 *   namespace (key: the name, 1..255 bytes)
 *     0 u32 magic "DJN1"   4 u32 ns_id   8 u64 checksum   16 u32 dim
 *     20 u32 config_len    24 u64 created_ms   32 config[config_len]
 *   entry (key: ns_id BE32, id BE64)
 *     0 u32 magic "DJE1"   4 u32 prompt_len   8 u64 checksum
 *     16 u64 created_ms    24 u64 expires_ms   32 u32 input_tokens
 *     36 u32 output_tokens 40 u64 cost_micro_usd   48 u32 response_len
 *     52 u32 0 (not checked)   56 prompt, then response
 *   vector (same key)
 *     0 u32 magic "DJV1"   4 u32 dim   8 u64 checksum   16 f32[dim]
 *   usage (same key)
 *     0 u32 magic "DJU1"   4 u32 hits   8 u64 checksum   16 u8 lfu
 *     17..24 0             24 u64 last_hit_ms   32 u64 expires_ms
 *   meta "format": u32 format version
 *
 * The namespace record's config bytes have a layout of their own, with a
 * revision byte (store.h, store_ns_config_encode).
 *
 * Decoders read exactly len bytes, never past them, check every length
 * against len before using it, and return 0 or DEJA_ERR_CORRUPT (wrong
 * size, magic, checksum or field range). Decoded pointers point into the
 * record. All functions are reentrant. */
#ifndef DEJA_STORE_RECORD_H
#define DEJA_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define STORE_KEY_LEN 12u
#define STORE_NS_REC_FIXED 32u /* then the configuration */
#define STORE_NS_REC_MAX (STORE_NS_REC_FIXED + STORE_NS_CONFIG_MAX)
#define STORE_ENTRY_HDR 56u  /* then prompt and response */
#define STORE_VECTOR_HDR 16u /* then f32[dim] */
#define STORE_USAGE_REC 40u

/* Keys are big-endian so that LMDB's byte order sorts by namespace, then
 * id: a namespace's entries form one contiguous range. */
void store_key_make(uint8_t key[STORE_KEY_LEN], uint32_t ns_id, uint64_t id);
void store_key_parse(const uint8_t key[STORE_KEY_LEN], uint32_t *ns_id, uint64_t *id);

/* The checksum a record carries at bytes 8..16: XXH3-64 of the key, the
 * record's first 8 bytes and its bytes from 16 on. len >= 16. */
uint64_t store_record_sum(const void *key, size_t key_len, const uint8_t *rec,
                          size_t len);

/* Writes the namespace record of ns (whose name is its key) into rec and
 * returns its length, STORE_NS_REC_FIXED + ns->config_len
 * (ns->config_len <= STORE_NS_CONFIG_MAX). */
size_t store_ns_rec_encode(const store_ns_rec *ns, uint8_t rec[STORE_NS_REC_MAX]);

/* Decodes a namespace record stored under key (the name, 1..255 bytes)
 * into *ns, name NUL-terminated; dim must be 1..4096. The configuration is
 * copied but not interpreted. */
int store_ns_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                        size_t len, store_ns_rec *ns);

/* Bytes of e's entry record: STORE_ENTRY_HDR + prompt_len + response_len. */
size_t store_entry_rec_size(const store_entry_rec *e);

/* Writes e's entry record (store_entry_rec_size bytes) into rec, for key. */
void store_entry_rec_encode(const uint8_t key[STORE_KEY_LEN], const store_entry_rec *e,
                            uint8_t *rec);

/* Decodes an entry record: ns_id and id from the key, the times, cost
 * figures, prompt and response (pointers into rec, also when empty).
 * Vector and usage fields are left alone. */
int store_entry_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                           size_t len, store_entry_rec *e);

/* Bytes of a vector record of dim floats: STORE_VECTOR_HDR + 4 * dim. */
size_t store_vector_rec_size(uint32_t dim);

/* Writes the vector record of vector[dim] into rec, for key. */
void store_vector_rec_encode(const uint8_t key[STORE_KEY_LEN], const float *vector,
                             uint32_t dim, uint8_t *rec);

/* Decodes a vector record into e->dim (1..4096) and e->vector, which
 * points into rec and is only as aligned as rec is: copy it out with
 * memcpy before reading it as floats. */
int store_vector_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                            size_t len, store_entry_rec *e);

/* The dim of a vector record of len bytes, from its size alone (no byte
 * of it is read); DEJA_ERR_CORRUPT when no dim in 1..4096 has that size. */
int store_vector_rec_dim(size_t len, uint32_t *dim);

/* Writes u's usage record (STORE_USAGE_REC bytes) into rec, for key. */
void store_usage_rec_encode(const uint8_t key[STORE_KEY_LEN], const store_usage_rec *u,
                            uint8_t rec[STORE_USAGE_REC]);

/* Decodes a usage record into u (ns_id and id from the key). */
int store_usage_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                           size_t len, store_usage_rec *u);

/* The meta table's "format" value: the u32 in a 4-byte record, or 0 (no
 * format deja ever wrote) for any other size. */
uint32_t store_meta_format_decode(const uint8_t *rec, size_t len);

#endif
