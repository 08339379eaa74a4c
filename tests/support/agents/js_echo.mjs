// An A2A agent written with @a2a-js/sdk on express (HTTP/1.1 only), for the interop tests:
// answers every message with a completed task whose artifact is "js echo: " + the text.
// Run: node js_echo.mjs PORT (with NODE_PATH or cwd resolving @a2a-js/sdk and express).
import express from "express";
import { randomUUID } from "node:crypto";
import { DefaultRequestHandler, InMemoryTaskStore } from "@a2a-js/sdk/server";
import { A2AExpressApp } from "@a2a-js/sdk/server/express";

const port = Number(process.argv[2]);
const card = {
  name: "js-echo",
  description: "an @a2a-js/sdk echo agent on express",
  protocolVersion: "0.3.0",
  version: "1.0.0",
  url: `http://127.0.0.1:${port}/`,
  preferredTransport: "JSONRPC",
  capabilities: { streaming: true, pushNotifications: false },
  defaultInputModes: ["text"],
  defaultOutputModes: ["text"],
  skills: [{ id: "echo", name: "echo", description: "echoes", tags: ["echo"] }],
};

class Echo {
  async execute(context, bus) {
    const text = context.userMessage.parts.filter((p) => p.kind === "text").map((p) => p.text).join(" ");
    const taskId = context.taskId;
    const contextId = context.contextId;
    bus.publish({ kind: "task", id: taskId, contextId, status: { state: "submitted" }, history: [context.userMessage] });
    bus.publish({
      kind: "artifact-update", taskId, contextId,
      artifact: { artifactId: randomUUID(), name: "echo", parts: [{ kind: "text", text: `js echo: ${text}` }] },
    });
    bus.publish({ kind: "status-update", taskId, contextId, status: { state: "completed" }, final: true });
    bus.finished();
  }
  async cancelTask() {}
}

const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new Echo());
const app = new A2AExpressApp(handler).setupRoutes(express());
app.listen(port, "127.0.0.1", () => console.log(`js-echo listening on ${port}`));
