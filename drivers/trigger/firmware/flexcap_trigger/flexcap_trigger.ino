// flexcap trigger box firmware: serial protocol version 1 (drivers/trigger/protocol.py; docs/trigger-box.md).
//
// Drives a TTL output (EMG amplifier trigger input) and an LED (seen by every camera) together and
// reports the box's own micros() for every edge, so pulse times do not depend on USB or host scheduling.
//
// Pins: TTL on D2, LED on D3 (through a resistor, or a transistor for a bright LED). On AVR both pins
// sit on one port (Uno/Nano: PORTD bits 2 and 3; Leonardo/Micro: PORTD bits 1 and 0; Mega: PORTE
// bits 4 and 5), so one store to the port register switches both in the same instruction.
//
// Timing: micros() counts in 4 us steps on a 16 MHz AVR (8 us at 8 MHz, 1 us on Teensy), so a
// reported edge is within about one step of the real one. Interrupts (timer0 every 1.024 ms, serial
// RX/TX) can delay an edge by ~10 us; they are blocked between the port write and the micros() read,
// so the reported time is the edge's time even when the edge itself was late. micros() is the
// box's clock, not the host's: it runs off the board's crystal (tens of ppm) or ceramic resonator
// (Uno R3: up to ~0.5 %), so the host maps it to its LSL clock with T queries (the box's reading
// between the host's send and receive times) and a linear fit for the drift, never assuming a rate.

#include <Arduino.h>

#define FIRMWARE_VERSION "1.0.0"
const uint8_t PROTOCOL_VERSION = 1;
const unsigned long BAUDRATE = 115200;
const uint8_t TTL_PIN = 2;
const uint8_t LED_PIN = 3;

const uint8_t MAX_PULSES = 16;
const uint8_t MAX_DURATIONS = 2 * MAX_PULSES - 1;
const uint32_t MIN_DURATION_US = 100;
const uint32_t MAX_DURATION_US = 10000000UL;
const uint32_t MAX_SEQ = 0x7FFFFFFFUL;  // 2^31 - 1

// Longest valid line: "F 2147483647" + 31 x " 10000000" = 291 characters.
const uint16_t LINE_MAX = 320;
// Every reply fits in 48 bytes (the longest, an E line, is 38), so one is sent only when the TX
// buffer has room for it: Serial.print would otherwise block until bytes drain at 87 us each.
const uint8_t REPLY_MAX = 48;
// No parsing or printing when an edge is due within QUIET_US: formatting an E line costs up to
// ~1.3 ms on a 16 MHz AVR (one software 32-bit division per digit), which must not delay an edge.
const uint32_t QUIET_US = 2500;
// The last SPIN_US before an edge are spent polling micros() alone, so the edge does not also
// wait for the rest of loop() (reading a serial byte, the reply checks).
const uint32_t SPIN_US = 100;

// TRAIN_REPORTING: every edge is done, E/D lines still to send (F is refused as busy until D).
enum State : uint8_t { TRAIN_IDLE, TRAIN_RUNNING, TRAIN_REPORTING };

static State state = TRAIN_IDLE;
static uint32_t seqNo;                     // the host's train number, echoed in A/E/D
static uint32_t durUs[MAX_DURATIONS];      // on, off, on, ..., on
static uint8_t nDurations;
static uint8_t nextEdge;                   // edges 0..nDurations; even = rise, odd = fall
static uint32_t due;                       // planned time of nextEdge (box micros)
static uint32_t riseUs[MAX_PULSES], fallUs[MAX_PULSES];
static uint8_t pulsesDone;                 // pulses whose fall has happened
static uint8_t pulsesReported;             // E lines sent

static char line[LINE_MAX + 1];
static uint16_t lineLen = 0;
static bool lineReady = false;
static bool lineTooLong = false;

#if defined(__AVR__)
static volatile uint8_t *ttlPort, *ledPort;
static uint8_t ttlMask, ledMask;  // ledMask is 0 when the LED bit is already in ttlMask (same port)
#endif

// Switches both outputs and returns micros() read right after the write.
static uint32_t writeOutputs(bool high) {
  noInterrupts();  // nothing may run between the write and the time stamp
#if defined(__AVR__)
  if (high) { *ttlPort |= ttlMask; if (ledMask) *ledPort |= ledMask; }
  else { *ttlPort &= ~ttlMask; if (ledMask) *ledPort &= ~ledMask; }
#else
  digitalWrite(TTL_PIN, high ? HIGH : LOW);  // well under 1 us apart on 32-bit boards
  digitalWrite(LED_PIN, high ? HIGH : LOW);
#endif
  uint32_t t = micros();  // safe with interrupts off (it checks the pending timer overflow itself)
  interrupts();
  return t;
}

static void fireEdge() {
  bool rising = (nextEdge % 2) == 0;
  uint32_t t = writeOutputs(rising);
  uint8_t pulse = nextEdge / 2;
  if (rising) riseUs[pulse] = t;
  else { fallUs[pulse] = t; pulsesDone = pulse + 1; }
  if (nextEdge == 0) due = t;  // the train's plan starts at its first rise
  // The next edge is planned from this one's planned time, not its measured time: a late edge
  // (an interrupt, a slow loop) shortens one interval instead of delaying the rest of the train.
  if (nextEdge < nDurations) due += durUs[nextEdge];
  nextEdge++;
  if (nextEdge > nDurations) state = TRAIN_REPORTING;
}

static void serviceTrain() {
  if (state != TRAIN_RUNNING) return;
  if ((int32_t)(due - micros()) > (int32_t)SPIN_US) return;
  // Wrap-safe: the signed difference is right across the 71.6-minute wrap of micros().
  while ((int32_t)(micros() - due) < 0) continue;
  fireEdge();
}

static bool quiet() {
  return state == TRAIN_RUNNING && (int32_t)(due - micros()) < (int32_t)QUIET_US;
}

static bool canSend() {
  if (quiet()) return false;
#if defined(__AVR__)
  // On AVR, HardwareSerial sends from a 64-byte buffer by interrupt, so a print that fits returns
  // at once. (Other cores' USB serial does not block on a short line.)
  if (Serial.availableForWrite() < REPLY_MAX) return false;
#endif
  return true;
}

// "<tag> <n1> ... <nk>\n". Protocol lines end in "\n" alone (println would send "\r\n").
static void sendNumbers(char tag, uint8_t k, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  const uint32_t v[4] = {a, b, c, d};
  Serial.print(tag);
  for (uint8_t i = 0; i < k; i++) {
    Serial.print(' ');
    Serial.print(v[i]);
  }
  Serial.print('\n');
}

static void hello() {
  Serial.print(F("I flexcap-trigger "));
  Serial.print(PROTOCOL_VERSION);
  Serial.print(F(" " FIRMWARE_VERSION "\n"));
}

static void refuse(bool haveSeq, uint32_t seq, const __FlashStringHelper *reason) {
  Serial.print(F("! "));
  if (haveSeq) Serial.print(seq);
  else Serial.print('-');
  Serial.print(' ');
  Serial.print(reason);
  Serial.print('\n');
}

// Next whitespace-separated decimal number: 1 = got one, 0 = end of line, -1 = not a number / > 2^32-1.
static int8_t nextNumber(char *&p, uint32_t &value) {
  while (*p == ' ' || *p == '\t') p++;
  if (*p == '\0') return 0;
  uint32_t v = 0;
  bool ok = true;
  for (; *p != '\0' && *p != ' ' && *p != '\t'; p++) {  // always consumes the whole token
    uint8_t d = (uint8_t)(*p - '0');  // non-digits give d > 9
    if (d > 9 || v > 429496729UL || (v == 429496729UL && d > 5)) ok = false;  // no division: slow on AVR
    else v = v * 10 + d;
  }
  value = v;
  return ok ? 1 : -1;
}

static void commandFire(char *p) {
  uint32_t seq, d;
  if (nextNumber(p, seq) != 1 || seq > MAX_SEQ) return refuse(false, 0, F("bad train number"));
  if (state != TRAIN_IDLE) return refuse(true, seq, F("busy"));
  uint8_t n = 0;
  bool badValue = false;
  int8_t got;
  while ((got = nextNumber(p, d)) != 0) {
    if (n == MAX_DURATIONS) return refuse(true, seq, F("need 1..16 pulses: on off ... on"));
    if (got < 0 || d < MIN_DURATION_US || d > MAX_DURATION_US) badValue = true;
    else durUs[n] = d;
    n++;
  }
  if (n == 0 || n % 2 == 0) return refuse(true, seq, F("need 1..16 pulses: on off ... on"));
  if (badValue) return refuse(true, seq, F("durations must be 100..10000000 us"));
  seqNo = seq;
  nDurations = n;
  nextEdge = 0;
  pulsesDone = 0;
  pulsesReported = 0;
  // A goes out before the first rise: printing after it could delay a short first pulse's fall.
  sendNumbers('A', 2, seq, (n + 1) / 2, 0, 0);
  state = TRAIN_RUNNING;
  fireEdge();  // the first rise follows the command at once
}

static void commandAbort() {
  uint32_t t = writeOutputs(false);
  state = TRAIN_IDLE;
  pulsesDone = pulsesReported = 0;  // an aborted train's unsent E lines are dropped: X instead of D
  sendNumbers('X', 1, t, 0, 0, 0);
}

static bool isAbort() {
  if (lineTooLong) return false;
  const char *p = line;
  while (*p == ' ' || *p == '\t') p++;
  return p[0] == 'X' && (p[1] == '\0' || p[1] == ' ' || p[1] == '\t');
}

static void handleLine() {
  if (lineTooLong) {
    lineTooLong = false;
    return refuse(false, 0, F("line too long"));
  }
  char *p = line;
  while (*p == ' ' || *p == '\t') p++;
  if (*p == '\0') return;  // blank line: ignored
  char cmd = *p++;
  if (*p != '\0' && *p != ' ' && *p != '\t') return refuse(false, 0, F("unknown command"));
  switch (cmd) {
    case 'I': hello(); break;
    // T: micros() is read just before the reply goes out; the host pairs it with the arrival.
    case 'T': sendNumbers('T', 1, micros(), 0, 0, 0); break;
    case 'F': return commandFire(p);
    case 'X': return commandAbort();
    default: return refuse(false, 0, F("unknown command"));
  }
}

// One byte per loop() pass, so reading never holds up an edge by more than a few microseconds.
static void readSerial() {
  if (lineReady || Serial.available() <= 0) return;
  char c = (char)Serial.read();
  if (c == '\n') {
    if (lineLen > 0 && line[lineLen - 1] == '\r') lineLen--;  // tolerate "\r\n"
    line[lineLen] = '\0';
    lineLen = 0;
    lineReady = true;  // with lineTooLong set, the reply is "! - line too long"
  } else if (!lineTooLong) {  // the rest of an overlong line is dropped
    if (lineLen < LINE_MAX) line[lineLen++] = c;
    else lineTooLong = true;
  }
}

void setup() {
  digitalWrite(TTL_PIN, LOW);
  digitalWrite(LED_PIN, LOW);
  pinMode(TTL_PIN, OUTPUT);
  pinMode(LED_PIN, OUTPUT);
#if defined(__AVR__)
  ttlPort = portOutputRegister(digitalPinToPort(TTL_PIN));
  ledPort = portOutputRegister(digitalPinToPort(LED_PIN));
  ttlMask = digitalPinToBitMask(TTL_PIN);
  ledMask = digitalPinToBitMask(LED_PIN);
  if (ledPort == ttlPort) {  // the usual case: one store switches both
    ttlMask |= ledMask;
    ledMask = 0;
  }
#endif
  writeOutputs(false);
  Serial.begin(BAUDRATE);  // native-USB boards ignore the rate; no wait for the host to open the port
  // Say hello once unasked: an Uno or Nano resets when the host opens the port, and the host's
  // first I then goes to the bootloader and is lost; this line answers it.
  hello();
}

void loop() {
  serviceTrain();
  readSerial();
  // X is never held back (it ends the train); any other line waits for canSend(), and while it
  // waits no more bytes are read (the 64-byte RX buffer holds what follows).
  if (lineReady && (isAbort() || canSend())) {
    handleLine();
    lineReady = false;
  } else if (pulsesReported < pulsesDone && canSend()) {
    // E lines go out after the fall and away from the next edge (see QUIET_US), never during one.
    uint8_t i = pulsesReported++;
    sendNumbers('E', 4, seqNo, i, riseUs[i], fallUs[i]);
  } else if (state == TRAIN_REPORTING && pulsesReported == pulsesDone && canSend()) {
    sendNumbers('D', 1, seqNo, 0, 0, 0);
    state = TRAIN_IDLE;
  }
}
