// Contracts of the image service: request/reply schemas (zod) with same-name types, and event payloads.
export {};
