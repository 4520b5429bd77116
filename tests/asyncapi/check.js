// Parse AsyncAPI documents with the official parser (@asyncapi/parser) and print what it
// reports, one JSON line per document: {"file", "errors", "warnings", "diagnostics"}.
//
//     node check.js FILE...
//
// The parser hands each payload schema to the schema parser registered for its
// schemaFormat; it ships one for JSON Schema draft-07 only, so parsers for JSON Schema
// 2019-09 and 2020-12 are registered through its extension point, registerSchemaParser:
// they check each payload against its meta-schema with Ajv's build for that draft. For an
// AsyncAPI 3 document the parser calls only parse(), not validate(), so parse() checks too:
// what it throws the parser reports as an error diagnostic.
"use strict";

const fs = require("fs");
const { Parser } = require("@asyncapi/parser");
const Ajv2019 = require("ajv/dist/2019").default;
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const SEVERITY = ["error", "warning", "info", "hint"];

function jsonSchemaParser(AjvClass, version) {
  const ajv = new AjvClass({ allErrors: true, strict: false });
  addFormats(ajv);
  return {
    getMimeTypes: () => ["schema", "schema+json", "schema+yaml"]
      .map((type) => `application/${type};version=${version}`),
    validate: async (input) => problems(input),
    parse: async (input) => {
      const found = problems(input);
      if (found.length) {
        throw new Error(found.map((p) => `${p.path.join("/")}: ${p.message}`).join("; "));
      }
      return input.data;
    },
  };

  function problems(input) {
    if (ajv.validateSchema(input.data)) return [];
    return ajv.errors.map((error) => ({
      message: `not a valid JSON Schema ${version}: ${error.instancePath || "/"} ${error.message}`,
      path: [...input.path, ...error.instancePath.split("/").filter(Boolean)],
    }));
  }
}

async function main(files) {
  const parser = new Parser();
  parser.registerSchemaParser(jsonSchemaParser(Ajv2019, "2019-09"));
  parser.registerSchemaParser(jsonSchemaParser(Ajv2020, "2020-12"));
  for (const file of files) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"));
    const shown = diagnostics.map((d) => ({
      severity: SEVERITY[d.severity] || String(d.severity),
      code: d.code, message: d.message, path: d.path.join("/"),
    }));
    console.log(JSON.stringify({
      file, parsed: document !== undefined,
      errors: shown.filter((d) => d.severity === "error").length,
      warnings: shown.filter((d) => d.severity === "warning").length,
      diagnostics: shown,
    }));
  }
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(2);
});
