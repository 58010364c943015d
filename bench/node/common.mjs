// Shared by produce.mjs and work.mjs: argument parsing and the Redis connection.
import IORedis from "ioredis";

/** Parse `--name value` pairs into an object of strings. */
export function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

/** An ioredis client for BullMQ (maxRetriesPerRequest null, as BullMQ requires for workers). */
export function connect(url) {
  return new IORedis(url, { maxRetriesPerRequest: null });
}

/** Exit with an error line if the script runs longer than maxS seconds (every run is bounded). */
export function deadline(maxS) {
  const timer = setTimeout(() => {
    process.stderr.write(`bench node: still running after ${maxS} s, exiting\n`);
    process.exit(3);
  }, maxS * 1000);
  timer.unref();
}
