/**
 * test/e2e/cluster.test.ts again with `cluster.registry = "replicated"`, the mode that is no
 * longer the default (issue 16): the same chat, presence, priority, conflict, offline and
 * node-death cases across nodes, with every node holding every session of the cluster instead
 * of looking them up in Redis.
 */
process.env.PARLEY_TEST_CLUSTER_REGISTRY = "replicated";
await import("./cluster.test.ts");
