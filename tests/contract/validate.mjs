// Validates an AsyncAPI document with @asyncapi/parser, then example messages against its schemas.
// Usage: node validate.mjs DOCUMENT [MESSAGES.json]; MESSAGES maps a channel address to payloads.
// Prints one JSON object; exits 1 when the document or any message is invalid, 2 on a usage error.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const [documentPath, messagesPath] = process.argv.slice(2);
if (!documentPath) {
  console.error("usage: node validate.mjs DOCUMENT [MESSAGES.json]");
  process.exit(2);
}

const { document, diagnostics } = await new Parser().parse(readFileSync(documentPath, "utf8"));
const problems = diagnostics
  .filter((d) => d.severity <= DiagnosticSeverity.Warning)
  .map((d) => ({
    severity: d.severity === DiagnosticSeverity.Error ? "error" : "warning",
    code: d.code,
    message: d.message,
    path: d.path.join("/"),
  }));
const result = { valid: document !== undefined && !problems.some((p) => p.severity === "error"), problems, messages: [] };

if (result.valid && messagesPath) {
  // Draft 7 with formats (date-time): the AsyncAPI schema format is a superset of JSON Schema Draft 07.
  const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
  const byAddress = new Map(document.channels().all().map((c) => [c.address(), c]));
  const examples = JSON.parse(readFileSync(messagesPath, "utf8"));
  for (const [address, payloads] of Object.entries(examples)) {
    if (address.startsWith("_")) continue;
    const channel = byAddress.get(address);
    if (!channel) {
      result.messages.push({ address, valid: false, errors: ["no such channel"] });
      continue;
    }
    const check = ajv.compile(channel.messages().all()[0].payload().json());
    for (const payload of payloads) {
      const valid = check(payload);
      result.messages.push({ address, valid, errors: valid ? [] : check.errors.map((e) => `${e.instancePath} ${e.message}`) });
    }
  }
  result.valid = result.messages.every((m) => m.valid);
}
console.log(JSON.stringify(result, null, 2));
process.exit(result.valid ? 0 : 1);
