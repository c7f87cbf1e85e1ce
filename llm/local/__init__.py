"""The embedded local language model (llama.cpp's OpenAI-compatible server). Import-light:
llama_cpp is optional and is imported only inside the functions that need it."""
