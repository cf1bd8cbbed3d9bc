/**
 * `cluster.registry` of the test clusters: the default, "replicated", unless
 * PARLEY_TEST_CLUSTER_REGISTRY=sharded asks for the other mode (test/e2e/cluster-sharded.test.ts
 * runs the cluster tests so; a test that names its own registry keeps it).
 */
export const TEST_CLUSTER_REGISTRY: "sharded" | "replicated" =
	process.env.PARLEY_TEST_CLUSTER_REGISTRY === "sharded" ? "sharded" : "replicated";
