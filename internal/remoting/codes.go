package remoting

// Request codes of the RocketMQ remoting protocol (Java RequestCode).
const (
	SendMessage                   = 10
	PullMessage                   = 11
	QueryMessage                  = 12
	QueryConsumerOffset           = 14
	UpdateConsumerOffset          = 15
	UpdateAndCreateTopic          = 17
	SearchOffsetByTimestamp       = 29
	GetMaxOffset                  = 30
	GetMinOffset                  = 31
	ViewMessageByID               = 33
	HeartBeat                     = 34
	UnregisterClient              = 35
	ConsumerSendMsgBack           = 36
	EndTransaction                = 37
	GetConsumerListByGroup        = 38
	CheckTransactionState         = 39
	NotifyConsumerIDsChanged      = 40
	LockBatchMQ                   = 41
	UnlockBatchMQ                 = 42
	RegisterBroker                = 103
	UnregisterBroker              = 104
	GetRouteInfoByTopic           = 105
	GetBrokerClusterInfo          = 106
	GetAllSubscriptionGroupConfig = 201
	GetAllTopicListFromNameServer = 206
	DeleteTopicInBroker           = 215
	DeleteTopicInNameServer       = 216
	SendMessageV2                 = 310
	SendBatchMessage              = 320
	SendReplyMessage              = 324
)

// Response codes (Java ResponseCode).
const (
	Success                 = 0
	SystemError             = 1
	SystemBusy              = 2
	RequestCodeNotSupported = 3
	FlushDiskTimeout        = 10
	SlaveNotAvailable       = 11
	FlushSlaveTimeout       = 12
	MessageIllegal          = 13
	ServiceNotAvailable     = 14
	NoPermission            = 16
	TopicNotExist           = 17
	PullNotFound            = 19
	PullRetryImmediately    = 20
	PullOffsetMoved         = 21
	QueryNotFound           = 22
	SubscriptionNotExist    = 24
	// IllegalOperation: RocketMQ 5.x refuses an END_TRANSACTION that is
	// not a check's answer once a half message with
	// CHECK_IMMUNITY_TIME_IN_SECONDS is older than that time.
	IllegalOperation = 604
)

// Flag bits of a command.
const (
	FlagResponse = 1 << 0
	FlagOneway   = 1 << 1
)

// Header codecs, the high byte of the header mark.
const (
	CodecJSON     = 0
	CodecRocketMQ = 1
)

// Language codes used by the binary header codec.
const (
	LanguageJava = 0
	LanguageGo   = 9
)

// Version is the protocol version the server reports in its commands
// (Java MQVersion V4_9_4).
const Version = 401
