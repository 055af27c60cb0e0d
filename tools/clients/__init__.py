"""The TypeScript client and web-demo constants, generated from the Python sources (`make clients`)."""
