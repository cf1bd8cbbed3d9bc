/**
 * test/e2e/cluster.test.ts again with `cluster.registry = "sharded"` (issue 16): the same
 * chat, presence, priority, conflict, offline and node-death cases across nodes, with the
 * sessions looked up in Redis instead of replicated on every node.
 */
process.env.PARLEY_TEST_CLUSTER_REGISTRY = "sharded";
await import("./cluster.test.ts");
