// The explorer: lists the service's methods (rpc.discover), calls them over
// the WebSocket at ./ws and shows replies and server notifications.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const pending = new Map(); // call id -> {resolve, reject}
let nextId = 1;
let socket = null;
let current = null; // the method shown

function setStatus(text) { $("status").textContent = text; }

// Docstrings are epytext (C{code}, L{link}): show the text inside the braces.
const plain = (text) => (text || "").replace(/\b[A-Z]\{([^{}]*)\}/g, "$1");

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(url);
  socket.onopen = () => { setStatus("connected"); discover(); };
  socket.onclose = (event) => {
    setStatus(`disconnected (${event.code}${event.reason ? ": " + event.reason : ""})`);
    $("send").disabled = true;
    for (const { reject } of pending.values()) reject({ code: 0, message: "connection closed" });
    pending.clear();
  };
  socket.onmessage = (event) => {
    let value;
    try { value = JSON.parse(event.data); } catch (e) { return; }
    for (const message of Array.isArray(value) ? value : [value]) received(message);
  };
}

function received(message) {
  if (message === null || typeof message !== "object") return;
  if ("result" in message || "error" in message) {
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if ("error" in message) waiter.reject(message.error); else waiter.resolve(message.result);
  } else if (typeof message.method === "string") {
    if ("id" in message) { // the server calls us: we answer nothing but "no such method"
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: message.id,
        error: { code: -32601, message: "Method not found", data: "the explorer serves no methods" } }));
    }
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${message.method} ${JSON.stringify(message.params ?? null)}`;
    $("notifications").prepend(item);
  }
}

function call(method, params) {
  const id = nextId++;
  const request = { jsonrpc: "2.0", method, id };
  if (params !== undefined) request.params = params;
  return new Promise((resolve, reject) => {
    if (socket.readyState !== WebSocket.OPEN) {
      reject({ code: 0, message: "not connected (reload the page to reconnect)" });
      return;
    }
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify(request));
  });
}

async function discover() {
  let doc;
  try {
    doc = await call("rpc.discover");
  } catch (error) {
    if (error.code === -32004) { $("auth").hidden = false; $("token").focus(); setStatus("needs a token"); }
    else setStatus(`rpc.discover failed: ${error.message}`);
    return;
  }
  $("auth").hidden = true;
  $("title").textContent = `${doc.info?.title || "jsonservice"} explorer`;
  const list = $("methods");
  list.replaceChildren();
  for (const method of doc.methods || []) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = method.name;
    button.dataset.method = method.name;
    if (method.summary) {
      const summary = document.createElement("small");
      summary.textContent = plain(method.summary);
      button.append(summary);
    }
    button.onclick = () => show(method, button);
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  }
}

function typeOf(schema) {
  if (!schema || Object.keys(schema).length === 0) return "any";
  if (schema.type === "array" && schema.items) return `array of ${typeOf(schema.items)}`;
  if (schema.type) return schema.type;
  if (schema.oneOf) return schema.oneOf.map(typeOf).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  return "any";
}

function show(method, button) {
  current = method;
  for (const other of document.querySelectorAll("#methods button")) other.removeAttribute("aria-current");
  button.setAttribute("aria-current", "true");
  $("method-name").textContent = method.name;
  $("method-doc").textContent = plain([method.summary, method.description].filter(Boolean).join("\n\n"));
  const fields = $("fields");
  fields.replaceChildren();
  method.params.forEach((param, index) => {
    const field = document.createElement("div");
    field.className = "field";
    const label = document.createElement("label");
    label.htmlFor = `param-${index}`;
    label.textContent = param.name + (param.required ? "" : " (optional)") + " ";
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = typeOf(param.schema);
    label.append(type);
    const input = document.createElement("input");
    input.id = `param-${index}`;
    input.name = param.name;
    input.autocomplete = "off";
    input.spellcheck = false;
    field.append(label, input);
    fields.append(field);
  });
  $("send").disabled = socket.readyState !== WebSocket.OPEN;
  $("reply").textContent = "";
  const first = fields.querySelector("input");
  (first || $("send")).focus();
}

function readParams(method) {
  const byPosition = method.paramStructure === "by-position";
  const values = byPosition ? [] : {};
  method.params.forEach((param, index) => {
    const text = $(`param-${index}`).value.trim();
    if (text === "") {
      if (param.required) throw new Error(`${param.name} is required`);
      return;
    }
    let value;
    try { value = JSON.parse(text); } catch (e) { throw new Error(`${param.name}: not a JSON value (a string is quoted: "${text}")`); }
    if (!byPosition) values[param.name] = value;
    else if (param.description === "any number of positional values" && Array.isArray(value)) values.push(...value);
    else values.push(value);
  });
  return byPosition ? values : (Object.keys(values).length ? values : undefined);
}

function showReply(text, isError) {
  const reply = $("reply");
  reply.textContent = text;
  reply.classList.toggle("error", isError);
}

async function submit(event) {
  event.preventDefault();
  if (!current) return;
  let params;
  try { params = readParams(current); } catch (e) { showReply(e.message, true); return; }
  showReply("…", false);
  try {
    const result = await call(current.name, params);
    showReply(JSON.stringify(result, null, 2), false);
  } catch (error) {
    let text = `Error ${error.code}: ${error.message}`;
    if (error.data !== undefined) text += `\n${JSON.stringify(error.data, null, 2)}`;
    showReply(text, true);
  }
}

async function authenticate(event) {
  event.preventDefault();
  try {
    await call("rpc.authenticate", { token: $("token").value });
    setStatus("connected");
    discover();
  } catch (error) {
    setStatus(`authentication failed: ${error.message}`);
  }
}

$("params").addEventListener("submit", submit);
$("auth").addEventListener("submit", authenticate);
connect();
