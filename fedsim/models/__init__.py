"""The model: a plain-torch Llama/Qwen2 decoder, its GGUF weights and tokenizer, and the table of model names."""
