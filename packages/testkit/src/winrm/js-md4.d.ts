declare module 'js-md4' {
  /** The subset of js-md4's API the fake uses; the package ships no types. */
  interface Md4 {
    arrayBuffer(message: ArrayBuffer | Uint8Array | string): ArrayBuffer;
  }
  const md4: Md4;
  export default md4;
}
