package socketd

import "time"

// Event is a change that GET /v1/events streams: a socket defined, changed
// or deleted, a socket's state changed, a connection opened or closed.
type Event struct {
	// ID increases by one with every event; a run of the daemon starts
	// at its start time in microseconds, above the runs before it.
	ID   int64     `json:"id"`
	Type EventType `json:"type"`
	Time time.Time `json:"time"`
	// Socket is the socket's name.
	Socket string `json:"socket"`
	// Connection is the connection's row: as begun for
	// EventConnectionOpened, as finished for EventConnectionClosed.
	Connection *Connection `json:"connection,omitempty"`
	// Status is the socket's status after an EventSocketState.
	Status *SocketStatus `json:"status,omitempty"`
}

// EventType says what an Event is about.
type EventType string

// Event types.
const (
	EventSocketCreated    EventType = "socket.created"
	EventSocketChanged    EventType = "socket.changed"
	EventSocketDeleted    EventType = "socket.deleted"
	EventSocketState      EventType = "socket.state"
	EventConnectionOpened EventType = "connection.opened"
	EventConnectionClosed EventType = "connection.closed"
)
