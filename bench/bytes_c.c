/* bench/bytes_c.c: the C side of the byte-channel benchmark. A producer
 * and a consumer that move messages through a nexus byte channel without
 * entering Lua; Lua only schedules them (bench/bytes_nexus.lua c).
 * Built by bench/run.sh: cc -O2 -shared -fPIC -I include. They call the
 * channel through the nexus_bytes_api table, which works whether the core
 * was loaded by require (private symbols) or linked into the nexus command.
 */
#include <stdint.h>
#include <string.h>

#include "nexus.h"

/* Commits up to n messages of size bytes (byte 0 = sequence number mod
 * 251, the rest a fixed pattern) until the ring is full; returns how many. */
int nxb_produce(const nexus_bytes_api *api, nexus_bchan *ch, uint32_t *seq, int n, int size) {
  nexus_bclaim c;
  memset(&c, 0, sizeof c);
  int i;
  for (i = 0; i < n; i++) {
    if (api->claim(ch, (size_t)size, &c) != 0) break;
    memset(c.ptr, 'c', (size_t)size);
    c.ptr[0] = (uint8_t)(*seq % 251u);
    (*seq)++;
    if (api->commit(&c) != 0) return -1;
  }
  return i;
}

/* Receives and releases up to n messages until the ring is empty; checks
 * the length and the sequence; returns how many, or -1 on a wrong one. */
int nxb_consume(const nexus_bytes_api *api, nexus_bchan *ch, uint32_t *seq, int n, int size) {
  nexus_bmsg m;
  memset(&m, 0, sizeof m);
  int i;
  for (i = 0; i < n; i++) {
    if (api->recv(ch, &m) != 0) break;
    int ok = (int)m.len == size && m.ptr[0] == (uint8_t)(*seq % 251u);
    (*seq)++;
    api->release(&m);
    if (!ok) return -1;
  }
  return i;
}
