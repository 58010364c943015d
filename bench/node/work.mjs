// One BullMQ worker process running a no-op processor until SIGTERM (or --max-s seconds).
//   node work.mjs --url redis://127.0.0.1:6379/8 --queue bench [--concurrency 50] [--max-s 300]
// On exit prints {"processed": N} as JSON.
import { Worker } from "bullmq";
import { connect, deadline, parseArgs } from "./common.mjs";

const args = parseArgs(process.argv.slice(2));
deadline(Number(args["max-s"] ?? 300));
let processed = 0;
const worker = new Worker(args.queue, async () => { processed += 1; }, {
  connection: connect(args.url),
  concurrency: Number(args.concurrency ?? 50),
});
worker.on("error", (err) => process.stderr.write(`bench node worker: ${err}\n`));

async function stop() {
  await worker.close();
  process.stdout.write(JSON.stringify({ processed }) + "\n");
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
