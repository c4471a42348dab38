// main.cc — loads a gptx checkpoint (config.json + model.safetensors) and generates greedily with the gptx C++ API.
// Usage: gptx_generate STEP_DIR MAX_NEW_TOKENS ID [ID ...]   (token ids in, token ids out: no tokenizer in C++)
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include <gptx/gptx.h>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s STEP_DIR MAX_NEW_TOKENS ID [ID ...]\n", argv[0]);
        return 2;
    }
    try {
        const gptx::GPTModel model = gptx::load_model(argv[1]);  // float32 on the CPU
        std::vector<int32_t> ids;
        for (int i = 3; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
        // The KV-cache pass: prefill the prompt once, then one decode step per token (gptx::prefill / decode).
        for (int32_t t : gptx::generate_greedy(model, ids, std::atoi(argv[2]))) ids.push_back(t);
        for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
        std::printf("\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gptx_generate: %s\n", e.what());
        return 1;
    }
    return 0;
}
