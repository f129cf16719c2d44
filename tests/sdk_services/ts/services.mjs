// Services written with the official TypeScript SDK (@restatedev/restate-sdk 1.17), plain
// JavaScript so that no compiler is needed: node services.mjs PORT
//
// The same behaviour as the Python services of the tests: Greeter/greet, Counter/{key}/add|get,
// Steps/three (3 x ctx.run), Sleeper/nap, Caller/call_greeter, Signup/run|confirm (a workflow
// waiting on a promise), Approvals/request (an awakeable whose id is written to a file).
// Served over h2c on 127.0.0.1 only (restate.serve binds every interface).
import http2 from "node:http2";
import fs from "node:fs";

// Node 20 lacks Promise.withResolvers, which the SDK calls on every invocation.
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const restate = await import("@restatedev/restate-sdk");

const greeter = restate.service({
  name: "Greeter",
  handlers: {
    greet: async (ctx, name) => `Hello, ${name}!`,
  },
});

const counter = restate.object({
  name: "Counter",
  handlers: {
    add: async (ctx, delta) => {
      const total = ((await ctx.get("count")) ?? 0) + delta;
      ctx.set("count", total);
      return total;
    },
    get: restate.handlers.object.shared(async (ctx) => (await ctx.get("count")) ?? 0),
  },
});

const steps = restate.service({
  name: "Steps",
  handlers: {
    three: async (ctx, name) => {
      const parts = [];
      for (let n = 0; n < 3; n++) {
        parts.push(await ctx.run(`step${n}`, async () => `${name}${n}`));
      }
      return parts.join("-");
    },
  },
});

const sleeper = restate.service({
  name: "Sleeper",
  handlers: {
    nap: async (ctx, millis) => {
      await ctx.sleep(millis);
      return "awake";
    },
  },
});

const caller = restate.service({
  name: "Caller",
  handlers: {
    call_greeter: async (ctx, name) => ctx.serviceClient(greeter).greet(name),
  },
});

const signup = restate.workflow({
  name: "Signup",
  handlers: {
    run: async (ctx, email) => {
      const code = await ctx.promise("confirmation");
      return `${email} confirmed with ${code}`;
    },
    confirm: async (ctx, code) => {
      await ctx.promise("confirmation").resolve(code);
    },
  },
});

const approvals = restate.service({
  name: "Approvals",
  handlers: {
    request: async (ctx, path) => {
      const { id, promise } = ctx.awakeable();
      await ctx.run("publish", async () => fs.writeFileSync(path, id));
      return await promise;
    },
  },
});

const port = Number(process.argv[2]);
const handler = restate.createEndpointHandler({
  services: [greeter, counter, steps, sleeper, caller, signup, approvals],
});
http2.createServer(handler).listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${port}`);
});
