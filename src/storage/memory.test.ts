import { storageContract } from "./contract/index.ts";
import { MemoryBackend } from "./memory.ts";

storageContract("memory", () => new MemoryBackend());
