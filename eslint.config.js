import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "engine/", "runs/", "**/*.js"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      // With noUncheckedIndexedAccess every indexed read is `T | undefined`; in array code whose
      // bounds are checked by construction, `!` is the honest way to say so.
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
);
