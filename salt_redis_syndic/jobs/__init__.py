"""Jobs going down: MoM publisher (bus -> stream), DC targeting, DC consumer (stream -> local publish), re-sends."""
