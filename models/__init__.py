"""Model files: the store of generations, default-model provisioning, llama.cpp serving, chat
templates, and the GGUF <-> torch bridge used by sleep."""
