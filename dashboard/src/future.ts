// SLOT FOR AN API THAT DOES NOT EXIST YET.
//
// The gateway's pools (issue 12) will add this route. Until a server has
// it, it answers 404 `no route ...` and the pools screen says "not
// available on this server"; once it does, the same screen shows what it
// answers. When the API lands, give the screen a view of its own in place
// of the generic DataView.
export const FUTURE = {
  /** Issue 12: pools with their members, strategy, queue lengths, throttle
   * and quota use. */
  pools: "/pool/find",
};
