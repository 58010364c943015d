// Enqueue N copies of the bench payload with BullMQ and print {"jobs_s", "n", "elapsed_s"} as JSON.
//   node produce.mjs --url redis://127.0.0.1:6379/8 --queue bench --n 2000 --mode single|bulk
//                    [--chunk 1000] [--payload JSON] [--max-s 120]
import { Queue } from "bullmq";
import { connect, deadline, parseArgs } from "./common.mjs";

const args = parseArgs(process.argv.slice(2));
const n = Number(args.n);
const chunk = Number(args.chunk ?? 1000);
const payload = JSON.parse(args.payload ?? "{}");
deadline(Number(args["max-s"] ?? 120));

const connection = connect(args.url);
const queue = new Queue(args.queue, { connection });
await queue.waitUntilReady();
const started = performance.now();
if (args.mode === "single") {
  for (let i = 0; i < n; i++) await queue.add("noop", payload);
} else {
  for (let i = 0; i < n; i += chunk) {
    const size = Math.min(chunk, n - i);
    await queue.addBulk(Array.from({ length: size }, () => ({ name: "noop", data: payload })));
  }
}
const elapsedS = (performance.now() - started) / 1000;
await queue.close();
await connection.quit();
process.stdout.write(JSON.stringify({ jobs_s: n / elapsedS, n, elapsed_s: elapsedS }) + "\n");
