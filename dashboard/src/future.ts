// SLOTS FOR APIS THAT DO NOT EXIST YET.
//
// The cluster (issue 11) and the gateway (issue 12) will add these routes.
// Until a server has them it answers 404 `no route ...`, and their screens
// say "not available on this server"; once it does, the same screens show
// what it answers. When those APIs land, check these paths against them and
// give each screen a view of its own in place of the generic DataView.
export const FUTURE = {
  /** Issue 11: each node, its address, version, last heartbeat and the
   * instances it drives. */
  clusterNodes: "/cluster/nodes",
  /** Issue 12: pools with their members, strategy, queue lengths, throttle
   * and quota use. */
  pools: "/pool/fetchAll",
  /** Issue 12: one message's parts, references and statuses. */
  message: (instance: string, id: string) => `/message/${encodeURIComponent(instance)}/${encodeURIComponent(id)}`,
  /** Issue 12: messages by direction, status, number and time. */
  messages: (instance: string) => `/message/find/${encodeURIComponent(instance)}`,
};
