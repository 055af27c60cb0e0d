// @ts-nocheck (AudioWorkletGlobalScope has no types in TypeScript's DOM library)
// The web demo's live stream: float samples at the AudioContext's rate (the service's, 16 kHz) → PCM16 LE
// chunks of `processorOptions.chunk` samples, posted to the page, which sends them on the WebSocket.
class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = options.processorOptions?.chunk ?? 1600;
    this.buffer = new Int16Array(this.chunk);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.chunk) {
          this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
          this.buffer = new Int16Array(this.chunk);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
