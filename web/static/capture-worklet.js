// Captures the first input channel in chunks of `frames` samples (about 20 ms) and posts
// each chunk to the page as a transferable Float32Array buffer (f32le on little-endian hosts).
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frames = (options.processorOptions && options.processorOptions.frames) || 960;
    this.buffer = new Float32Array(this.frames);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const channel = input[0];
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.frames - this.filled);
        this.buffer.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.frames) {
          this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
          this.buffer = new Float32Array(this.frames);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor('capture', CaptureProcessor);
