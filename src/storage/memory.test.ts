import { storageContract } from "./contract.ts";
import { MemoryBackend } from "./memory.ts";

storageContract("memory", () => new MemoryBackend());
